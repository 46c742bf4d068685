"""Preference data with a pattern a tiny model can learn, oriented against its base.

Each answer is `<fact> <suffix>`; which suffix people prefer is fixed across examples.
The test first asks the untrained base which suffix it likes, then declares the other one
the preferred one, so the base starts near 0% accuracy and only learning can raise it.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset
from tests.support.builders import make_job, merge

WORDS = ["red", "blue", "green", "gold", "apple", "car", "sky", "coat", "door", "ring",
         "cup", "lamp", "tree", "fish", "moon", "road"]  # fmt: skip
SUFFIXES = ["thanks for asking", "no idea sorry", "maybe later friend"]


def prompts(n: int, seed: int) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rnd.sample(WORDS, 2)
        out.append((f"Tell me about the {a} {b}.", f"The {a} {b} is fine,"))
    return out


def pairs(n: int, seed: int, good: str, bad: str) -> list[dict[str, Any]]:
    return [{"prompt": p, "chosen": f"{fact} {good}", "rejected": f"{fact} {bad}"}
            for p, fact in prompts(n, seed)]  # fmt: skip


def ranked(n: int, seed: int, order: list[str]) -> list[dict[str, Any]]:
    return [
        {"prompt": p, "responses": [f"{fact} {s}" for s in order]} for p, fact in prompts(n, seed)
    ]


def corpus() -> list[str]:
    """Text for the tiny tokenizer: every prompt and fact with every suffix."""
    out = []
    for p, fact in prompts(64, 1) + prompts(16, 2):
        out += [p] + [f"{fact} {s}" for s in SUFFIXES]
    return out


def tiny_base() -> str:
    """The tiny Llama (engine's builder, cached under $KUBETUNE_CACHE) as a local folder."""
    from kubetune_trainer.modeling.builtin import build_tiny_llama

    return str(build_tiny_llama(corpus(), seed=0))


def base_scores(base: str, suffixes: list[str]) -> list[float]:
    """Mean length-normalized log-likelihood of each suffix under the untrained base."""
    import torch

    from kubetune_trainer.data.templates import render_prompt
    from kubetune_trainer.evaluation.models import load_model
    from kubetune_trainer.evaluation.preference import encode_pairs, response_logprobs

    lm = load_model(base)
    totals = [0.0] * len(suffixes)
    for p, fact in prompts(8, 5):
        batch = encode_pairs(
            lm.tokenizer, render_prompt(p, lm.tokenizer), [f"{fact} {s}" for s in suffixes]
        )
        with torch.no_grad():
            scores = response_logprobs(lm.model, batch, lm.tokenizer.pad_token_id)
        totals = [t + float(x) for t, x in zip(totals, scores, strict=True)]
    return totals


def prepared_dpo(good: str, bad: str, n: int = 48) -> PreparedDataset:
    return PreparedDataset(
        "preference", "preference", pairs(n, 1, good, bad), pairs(16, 2, good, bad), "t"
    )


def prepared_ranked(order: list[str], n: int = 48) -> PreparedDataset:
    return PreparedDataset("ranked", "ranked", ranked(n, 1, order), ranked(12, 2, order), "t")


PREFERENCE_SPEC: dict[str, Any] = {
    "model": {"base": "builtin:tiny-llama"},
    "adapter": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
    "dataset": {"source": "unused.jsonl", "format": "preference", "maxSeqLength": 64},
    "training": {"maxSteps": 24, "microBatchSize": 4, "learningRate": 0.01, "loggingSteps": 1,
                 "scheduler": "constant", "seed": 7},
    "evaluation": {"enabled": False},
}  # fmt: skip


def preference_job(output: str, objective: str, name: str = "p", **spec: Any) -> FineTuneJob:
    """make_job over PREFERENCE_SPEC: the objective and its dataset format set last."""
    fmt = "preference" if objective == "dpo" else "ranked"
    spec = merge(copy.deepcopy(spec), {"objective": objective, "dataset": {"format": fmt}})
    return make_job(output, name, base=PREFERENCE_SPEC, **spec)
