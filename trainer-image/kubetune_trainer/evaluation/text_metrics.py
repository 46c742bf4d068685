"""Reference-based text metrics: ROUGE-L, BLEU and exact match.

`evaluate.load("rouge")` needs a hub download, so rouge_score and sacrebleu are called
directly. Every function takes parallel lists (prediction i is judged against reference i).
"""

from __future__ import annotations

import re
import string

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; "
            "they must be parallel lists"
        )


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (longest common subsequence of tokens), 0..1."""
    _check(predictions, references)
    if not predictions:
        return 0.0
    scores = [
        _SCORER.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)
    ]
    return sum(scores) / len(scores)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exp smoothing), 0..100."""
    _check(predictions, references)
    if not predictions:
        return 0.0
    return float(BLEU().corpus_score(predictions, [references]).score)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after `normalize_answer`, 0..1."""
    _check(predictions, references)
    if not predictions:
        return 0.0
    hits = sum(
        normalize_answer(p) == normalize_answer(r)
        for p, r in zip(predictions, references, strict=True)
    )
    return hits / len(predictions)
