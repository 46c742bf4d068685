"""Generate train.jsonl: short finance Q&A in the finance_qa layout (deterministic).

    python examples/data/finance_qa/generate.py   # rewrites train.jsonl next to this file

Templates x tickers x question types. Answers that depend on live market data
(context_required: true, no context) use the placeholders <PRICE>, <CHANGE> and
<TIMESTAMP> instead of numbers; rows that carry a `context` quote its numbers. Each
target (answer + rationale + citations + risk) stays short so a 135M model learns the
layout in a few minutes of CPU LoRA.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# ticker: (company, sector, filing month, driver of results)
COMPANIES = {
    "AAPL": ("Apple", "technology", "iPhone and services revenue"),
    "MSFT": ("Microsoft", "software", "Azure cloud growth"),
    "NVDA": ("Nvidia", "semiconductors", "data-center GPU demand"),
    "AMZN": ("Amazon", "retail and cloud", "AWS margins"),
    "JPM": ("JPMorgan Chase", "banking", "net interest income"),
    "XOM": ("Exxon Mobil", "energy", "oil and gas prices"),
    "JNJ": ("Johnson & Johnson", "healthcare", "pharmaceutical sales"),
    "KO": ("Coca-Cola", "consumer staples", "pricing power"),
    "TSLA": ("Tesla", "automotive", "vehicle deliveries"),
    "GOOGL": ("Alphabet", "internet services", "search advertising"),
}
RISKS = [
    "Prices can change quickly; this is not personal investment advice.",
    "Past performance does not guarantee future results.",
    "Check live data before acting; markets move on news.",
    "Single-stock positions carry concentrated risk.",
]


def live(t: str, name: str, sector: str, driver: str) -> list[dict]:
    """Questions that need live data: the answer uses placeholders."""
    return [
        dict(
            question=f"What is {name} trading at right now?",
            answer=f"{t} last traded at <PRICE> as of <TIMESTAMP>.",
            rationale="The quote comes from the live market feed at answer time.",
            citations=[f"{t} real-time quote"],
        ),
        dict(
            question=f"Why did {t} move today?",
            answer=f"{t} moved <CHANGE> today, mainly on news about {driver}.",
            rationale=f"Same-day moves in {sector} usually track {driver}.",
            citations=[f"{t} intraday news", f"{t} latest 10-Q"],
        ),
        dict(
            question=f"How did {name} react to its last earnings report?",
            answer=f"{t} changed <CHANGE> the session after earnings, closing at <PRICE>.",
            rationale=f"Investors focused on {driver} versus expectations.",
            citations=[f"{t} earnings release", f"{t} earnings call transcript"],
        ),
        dict(
            question=f"Should I buy {t} at today's price?",
            answer=f"At <PRICE> the decision depends on your horizon; {t} is a hold for most.",
            rationale=f"Valuation at <PRICE> already reflects {driver}.",
            citations=[f"{t} analyst consensus", f"{t} latest 10-K"],
        ),
        dict(
            question=f"Where is {t} within its 52-week range?",
            answer=f"{t} trades at <PRICE>, between its 52-week low and high as of <TIMESTAMP>.",
            rationale="The range position is computed from live daily closes.",
            citations=[f"{t} 52-week price history"],
        ),
    ]


def general(t: str, name: str, sector: str, driver: str) -> list[dict]:
    """Questions answerable without live data: no numbers needed."""
    return [
        dict(
            question=f"What drives {name}'s results?",
            answer=f"{name} results depend mostly on {driver}.",
            rationale=f"{driver.capitalize()} is the largest swing factor in {t} filings.",
            citations=[f"{t} latest 10-K"],
        ),
        dict(
            question=f"Which sector is {t} in?",
            answer=f"{t} is in the {sector} sector.",
            rationale=f"{name} reports its main business as {sector}.",
            citations=[f"{t} company profile"],
        ),
        dict(
            question=f"What is the main risk for {t} shareholders?",
            answer=f"The main risk is a slowdown in {driver}.",
            rationale=f"Guidance in {t} filings ties outlook to {driver}.",
            citations=[f"{t} 10-K risk factors", f"{t} earnings call transcript"],
        ),
        dict(
            question=f"Does {name} pay a dividend?",
            answer=f"Check {t}'s latest declaration; dividend policy is set by its board.",
            rationale=f"Payouts in {sector} depend on cash flow from {driver}.",
            citations=[f"{t} investor relations", f"{t} latest 10-K"],
        ),
    ]


def with_context(t: str, name: str, rng: random.Random) -> dict:
    """A question that carries its own market data, so the answer may quote it."""
    price = round(rng.uniform(40, 900), 2)
    change = round(rng.uniform(-4, 4), 1)
    day = f"2024-0{rng.randint(1, 9)}-{rng.randint(10, 28)}"
    direction = "up" if change >= 0 else "down"
    return dict(
        question=f"Summarise {t}'s move from the data given.",
        context=f"{t} closed at ${price} on {day}, {change:+.1f}% on the day.",
        answer=f"{t} closed {direction} {abs(change):.1f}% at ${price} on {day}.",
        rationale="The figures come directly from the provided market data.",
        citations=["Provided market data"],
    )


def main() -> None:
    rng = random.Random(7)
    rows: list[dict] = []
    for t, (name, sector, driver) in COMPANIES.items():
        for q in live(t, name, sector, driver):
            rows.append({**q, "ticker": t, "context_required": True})
        for q in general(t, name, sector, driver):
            rows.append({**q, "ticker": t, "context_required": False})
        for _ in range(3):
            rows.append({**with_context(t, name, rng), "ticker": t, "context_required": True})
    # Second phrasings of every question double the set without new facts.
    variants = ("Quick question: ", "Briefly, ")
    rows += [{**r, "question": rng.choice(variants) + r["question"][0].lower() + r["question"][1:]}
             for r in rows]  # fmt: skip
    rng.shuffle(rows)
    out = Path(__file__).with_name("train.jsonl")
    with out.open("w", encoding="utf-8") as fh:
        for r in rows:
            row = {
                "question": r["question"], "answer": r["answer"], "rationale": r["rationale"],
                "tickers": [r["ticker"]], "citations": r["citations"],
                "context_required": r["context_required"], "risk_note": rng.choice(RISKS),
            }  # fmt: skip
            if "context" in r:
                row["context"] = r["context"]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
