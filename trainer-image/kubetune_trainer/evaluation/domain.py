"""Domain metrics, chosen by the dataset format, computed from generated outputs.

Every function takes the generated outputs and the evaluation records (prompt,
completion, meta) they answer, and returns a flat {metric: float | None} dict. Rates are
0..1; a rate or score over zero examples is None (null in report.json, "n/a" in
report.md, not logged to MLflow), never 0.0, and the count it is over is always given
(`*_examples`, or the result's examples_generated), so "nothing parsed" cannot read as
"perfectly calibrated".

- finance_qa: format compliance, citation rate, risk-note presence, placeholder use
  and placeholder compliance, and the rate of answers quoting numbers absent from the
  prompt/context.
- trading: parse rate of the JSON recommendation, direction accuracy against the realized
  label/return in the record's meta, and the Brier score of the stated confidence.
- qa: exact match (with ROUGE-L added by the runner for every format).
- any format, when evaluation.metrics names them: medical_mcq and genomics (domain_bio.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kubetune_trainer.data.formats.finance import PLACEHOLDERS, parse_finance_answer
from kubetune_trainer.data.formats.trading import parse_recommendation as parse_trading_json

from .text_metrics import exact_match

Record = dict[str, Any]
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CITE_MARK = re.compile(r"\[\d+\]")


Metrics = dict[str, float | None]


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _numbers(text: str) -> set[str]:
    """Numbers as written, commas dropped so 1,200 matches 1200; citation marks ignored."""
    return {n.replace(",", "") for n in _NUMBER.findall(_CITE_MARK.sub(" ", text))}


def needs_placeholders(record: Record) -> bool:
    """Did the example require placeholders (live data asked for, no context given)?"""
    meta = record.get("meta") or {}
    if "context_required" in meta:
        return bool(meta["context_required"]) and "Context:" not in record.get("prompt", "")
    # Without the flag, the reference itself tells: it uses placeholders only when required.
    return any(p in record.get("completion", "") for p in PLACEHOLDERS)


def required_placeholders(record: Record) -> tuple[str, ...]:
    """The placeholders an answer to this example should use: those of the reference, or
    any of them when only the record's meta says live data was required."""
    if not needs_placeholders(record):
        return ()
    used = tuple(p for p in PLACEHOLDERS if p in record.get("completion", ""))
    return used or PLACEHOLDERS


def finance_metrics(outputs: list[str], records: list[Record]) -> Metrics:
    parsed = [parse_finance_answer(o) for o in outputs]
    n = len(outputs)
    wanted = [required_placeholders(r) for r in records]
    required = [i for i, w in enumerate(wanted) if w]
    unsupported = 0
    for out, p, rec in zip(outputs, parsed, records, strict=True):
        # Only the claims count: citations may legitimately carry years and section numbers.
        claims = f"{p['answer']} {p['rationale']}" if p["sections"] else out
        if _numbers(claims) - _numbers(rec.get("prompt", "")):
            unsupported += 1
    return {
        "format_compliance": _rate(sum(p["complete"] for p in parsed), n),
        "citation_rate": _rate(sum(bool(p["citations"]) for p in parsed), n),
        "risk_note_rate": _rate(sum(bool(p["risk"]) for p in parsed), n),
        # Among examples that required placeholders: the answer says at least one of the
        # placeholders required there (an answer without any does not count as using one).
        "placeholder_use_rate": _rate(
            sum(any(p in parsed[i]["placeholders"] for p in wanted[i]) for i in required),
            len(required),
        ),
        # Among the same examples: no raw price/change/timestamp leaked (an answer with no
        # number and no placeholder passes this one; placeholder_use_rate tells them apart).
        "placeholder_compliance": _rate(
            sum(not parsed[i]["raw_values"] for i in required), len(required)
        ),
        "placeholder_examples": float(len(required)),
        "unsupported_number_rate": _rate(unsupported, n),
    }


def parse_recommendation(text: str) -> tuple[str | None, float | None]:
    """(buy|sell|hold or None, confidence in 0..1 or None) from a trading answer.

    The trained layout is one JSON object (data/formats/trading.py); text that does not
    hold such an object counts as unparsed, so the parse rate measures format learning.
    """
    obj = parse_trading_json(text)
    if obj is None:
        return None, None
    conf = obj.get("confidence")
    ok = isinstance(conf, (int, float)) and not isinstance(conf, bool) and 0 <= conf <= 1
    return obj["action"], float(conf) if ok else None


def realized_action(meta: dict[str, Any], hold_band_pct: float = 1.0) -> str | None:
    """What the market did over the horizon, from the record's meta (label or return %)."""
    label = meta.get("label") or meta.get("realized_label")
    if isinstance(label, str) and label.lower() in ("buy", "sell", "hold"):
        return label.lower()
    for key in ("realized_return_pct", "forward_return_pct", "realized_return", "forward_return"):
        if isinstance(meta.get(key), (int, float)):
            ret = float(meta[key]) * (1 if key.endswith("_pct") else 100)
            if abs(ret) < hold_band_pct:
                return "hold"
            return "buy" if ret > 0 else "sell"
    return None


def trading_metrics(
    outputs: list[str], records: list[Record], hold_band_pct: float = 1.0
) -> Metrics:
    parsed = [parse_recommendation(o) for o in outputs]
    truth = [realized_action(r.get("meta") or {}, hold_band_pct) for r in records]
    judged = [
        (a, c, t)
        for (a, c), t in zip(parsed, truth, strict=True)
        if a is not None and t is not None
    ]
    scored = [(c, float(a == t)) for a, c, t in judged if c is not None]
    return {
        "recommendation_parse_rate": _rate(sum(a is not None for a, _ in parsed), len(outputs)),
        "direction_accuracy": _rate(sum(a == t for a, _, t in judged), len(judged)),
        "direction_examples": float(len(judged)),
        # Brier: mean (confidence - was it right)^2 — 0 is perfect, 0.25 is a coin's 0.5.
        "brier_score": sum((c - hit) ** 2 for c, hit in scored) / len(scored) if scored else None,
        "confidence_examples": float(len(scored)),
    }


def qa_metrics(outputs: list[str], records: list[Record]) -> Metrics:
    refs = [r.get("completion", "") for r in records]
    return {"exact_match": exact_match(outputs, refs) if outputs else None}


DOMAIN_METRICS: dict[str, Callable[[list[str], list[Record]], Metrics]] = {
    "finance_qa": finance_metrics,
    "trading": trading_metrics,
    "qa": qa_metrics,
}


def domain_metrics(
    fmt: str, outputs: list[str], records: list[Record], extra: Sequence[str] = ()
) -> Metrics:
    """The metrics of one dataset format ({} for formats without domain metrics), plus
    those of the evaluation.metrics names in `extra` (domain_bio.py)."""
    from .domain_bio import EXTRA_METRICS

    fn = DOMAIN_METRICS.get(fmt)
    out = fn(outputs, records) if fn else {}
    for name in extra:
        out.update(EXTRA_METRICS[name](outputs, records))
    return out
