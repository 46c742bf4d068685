"""Generate rated.jsonl, pairs.jsonl and ranked.jsonl (deterministic).

    python examples/data/preference/generate.py

The preference signal is deliberately visible so a tiny model can learn it: the better
answer always starts with "Answer:", states the fact, and ends with a period; worse answers
hedge ("Hmm, maybe..."), ramble, or give a wrong value.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Canada": "Ottawa",
    "Peru": "Lima", "Norway": "Oslo", "Egypt": "Cairo", "India": "New Delhi",
    "Chile": "Santiago", "Spain": "Madrid", "Italy": "Rome", "Ghana": "Accra",
}  # fmt: skip
OPPOSITES = {
    "hot": "cold", "early": "late", "open": "closed", "light": "dark", "full": "empty",
    "fast": "slow", "up": "down", "strong": "weak", "wet": "dry", "loud": "quiet",
}  # fmt: skip


def facts(rng: random.Random) -> list[tuple[str, str, str]]:
    """(prompt, correct value, wrong value)."""
    out = []
    for country, city in CAPITALS.items():
        wrong = rng.choice([c for c in CAPITALS.values() if c != city])
        out.append((f"What is the capital of {country}?", city, wrong))
    for word, opp in OPPOSITES.items():
        wrong = rng.choice([o for o in OPPOSITES.values() if o != opp])
        out.append((f"What is the opposite of '{word}'?", opp, wrong))
    for _ in range(38):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        out.append((f"What is {a} + {b}?", str(a + b), str(a + b + rng.choice([-3, -1, 2, 5]))))
    rng.shuffle(out)
    return out


def good(value: str) -> str:
    return f"Answer: {value}."


def verbose(value: str) -> str:
    return f"Answer: {value}. Let me know if there is anything else at all I can help with."


def hedge(value: str) -> str:
    return f"Hmm, maybe it is {value}, but I am not really sure about that."


def wrong(value: str) -> str:
    return f"Hmm, I think it could be {value}? Hard to say."


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {path}")


def main() -> None:
    rng = random.Random(11)
    items = facts(rng)  # 60 prompts
    here = Path(__file__).parent
    rated = []
    for prompt, right, bad in items[:20]:
        outs = [(good(right), 5), (verbose(right), 4), (hedge(right), 2), (wrong(bad), 1)]
        rng.shuffle(outs)
        rated += [{"prompt": prompt, "output": o, "rating": r} for o, r in outs]
    write(here / "rated.jsonl", rated)
    pairs = []
    for prompt, right, bad in items + items[:20]:
        rejected = rng.choice([hedge(right), wrong(bad), wrong(right)])
        pairs.append({"prompt": prompt, "chosen": good(right), "rejected": rejected})
    # The 20 repeated prompts get a second, different rejected answer.
    for i in range(60, 80):
        pairs[i]["rejected"] = verbose(items[i - 60][1]).replace("Answer: ", "Well, ")
    write(here / "pairs.jsonl", pairs)
    ranked = [
        {"prompt": p, "responses": [good(r), verbose(r), hedge(r), wrong(b)]} for p, r, b in items
    ]
    write(here / "ranked.jsonl", ranked)


if __name__ == "__main__":
    main()
