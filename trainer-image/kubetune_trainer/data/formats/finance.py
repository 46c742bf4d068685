"""finance_qa rows -> SFT records with one fixed answer layout, and its parser.

Row schema (after field_map):
  question: str, answer: str, rationale: str, tickers: [str] (1-5 capital letters, may end
  in .X), citations: [str] (at least one), context_required: bool, risk_note: str,
  context?: str (market data given to the model).

Placeholders: when `context_required` is true and no `context` is given, the answer depends
on live data the model cannot know, so answer and rationale must say `<PRICE>`,
`<CHANGE>` and `<TIMESTAMP>` instead of raw prices ($182.50, 182.50 USD), percentage
changes (+2.3%) and dates/times (2024-05-01, 14:30). Such rows are reported as bad.

The target layout (what the model learns and what evaluation parses):

    Answer: <answer>
    Rationale: <rationale>
    Citations: [1] <first>; [2] <second>
    Risk: <risk note>

The prompt is the question, then `Tickers: AAPL, MSFT`, then `Context: ...` when given.
"""

from __future__ import annotations

import re
from typing import Any

from ..report import RowError
from ..sources import Row
from .base import Record, sft, str_list, text

PLACEHOLDERS = ("<PRICE>", "<CHANGE>", "<TIMESTAMP>")
_TICKER = re.compile(r"^[A-Z]{1,5}(\.[A-Z])?$")
# Raw values that must be placeholders: what kind of value, and the pattern that finds it.
_RAW = (
    ("<PRICE>", re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP)\b")),
    ("<CHANGE>", re.compile(r"[+\-−]?\d+(?:\.\d+)?\s?%")),
    ("<TIMESTAMP>", re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2})?|\b\d{1,2}:\d{2}\b")),
)  # fmt: skip
_SECTION = re.compile(r"^(Answer|Rationale|Citations|Risk):[ \t]*", re.MULTILINE)
_CITE = re.compile(r"\[(\d+)\]\s*([^\[]*?)\s*(?=;?\s*\[\d+\]|$)", re.DOTALL)


def placeholder_violations(text_: str) -> list[tuple[str, str]]:
    """(raw value, placeholder it should be) for every raw price/change/timestamp in text."""
    found: list[tuple[str, str]] = []
    for placeholder, pattern in _RAW:
        found += [(m.group(0).strip(), placeholder) for m in pattern.finditer(text_)]
    return found


def format_finance_answer(answer: str, rationale: str, citations: list[str], risk: str) -> str:
    cites = "; ".join(f"[{i}] {c}" for i, c in enumerate(citations, start=1))
    return f"Answer: {answer}\nRationale: {rationale}\nCitations: {cites}\nRisk: {risk}"


def parse_finance_answer(output: str) -> dict[str, Any]:
    """Split a generated answer back into its parts; tolerant of missing sections.

    Returns {answer, rationale, citations: [str], risk, sections: [names found in order],
    complete: bool (all four present, in order), placeholders: [placeholders used],
    raw_values: [(raw value, expected placeholder)]}.
    """
    parts: dict[str, str] = {}
    order: list[str] = []
    marks = list(_SECTION.finditer(output))
    for i, m in enumerate(marks):
        name = m.group(1).lower()
        end = marks[i + 1].start() if i + 1 < len(marks) else len(output)
        if name not in parts:
            parts[name] = output[m.end() : end].strip()
            order.append(name)
    citations = [c.strip().rstrip(";") for _, c in _CITE.findall(parts.get("citations", ""))]
    expected = ["answer", "rationale", "citations", "risk"]
    return {
        "answer": parts.get("answer", ""),
        "rationale": parts.get("rationale", ""),
        "citations": [c for c in citations if c],
        "risk": parts.get("risk", ""),
        "sections": order,
        "complete": order[:4] == expected and all(parts.get(k) for k in expected),
        "placeholders": [p for p in PLACEHOLDERS if p in output],
        "raw_values": placeholder_violations(output),
    }


def finance_prompt(question: str, tickers: list[str], context: str = "") -> str:
    prompt = f"{question}\nTickers: {', '.join(tickers)}"
    return f"{prompt}\nContext: {context}" if context else prompt


def finance_row(d: Record, row: Row) -> list[Record]:
    question, answer, rationale = text(d, "question"), text(d, "answer"), text(d, "rationale")
    risk = text(d, "risk_note")
    tickers = str_list(d, "tickers")
    bad = [t for t in tickers if not _TICKER.match(t)]
    if bad:
        raise RowError(f"field `tickers`: {bad[0]!r} is not a ticker symbol (e.g. AAPL, BRK.B)")
    citations = str_list(d, "citations")
    needs = d.get("context_required")
    if not isinstance(needs, bool):
        raise RowError("field `context_required` must be true or false")
    context = text(d, "context", required=False)
    if needs and not context:
        for field, value in (("answer", answer), ("rationale", rationale)):
            raw = placeholder_violations(value)
            if raw:
                value_, placeholder = raw[0]
                raise RowError(
                    f"field `{field}` has raw value {value_!r} where {placeholder} is required "
                    "(context_required is true and no context is given)"
                )
    target = format_finance_answer(answer, rationale, citations, risk)
    return [sft(finance_prompt(question, tickers, context), target, tickers=tickers)]
