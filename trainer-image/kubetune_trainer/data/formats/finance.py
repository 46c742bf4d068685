"""finance_qa rows -> SFT records with one fixed answer layout, and its parser.

Row schema (after field_map):
  question: str, answer: str, rationale: str, tickers: [str] (1-5 capital letters, may end
  in .X), citations: [str | {source, timestamp?}] (at least one), context_required: bool,
  risk_note?: str (DEFAULT_RISK_NOTE when absent), context?: str (market data given).

A citation object renders as `source (timestamp)`, a string as itself, so both kinds
share one answer layout. Without a risk_note the target still has its Risk line, with
DEFAULT_RISK_NOTE: every answer keeps the four sections the evaluation checks.

Placeholders: when `context_required` is true and no `context` is given, the answer depends
on live data the model cannot know, so answer and rationale must say `<PRICE>`,
`<CHANGE>` and `<TIMESTAMP>` instead of raw values. Such rows are reported as bad:

- `<PRICE>`: a currency amount (any number after or before a currency of CURRENCIES, by
  ISO code or symbol: $182.50, €90, ¥27,000, ₹1,500, CHF 90, 1500 JPY, 182.50 USD) or any
  bare decimal number (`Hold at 182.50.`, `closed at 1,182.5`); integers alone
  (`1,250 shares`) are not.
- `<CHANGE>`: a percentage or basis-point move (+2.3%, 2.3 percent, 1.5 pct, 25 bps,
  25 basis points).
- `<TIMESTAMP>`: a date or time (2024-05-01, 2024-05-01T14:30, May 1, 2024, 1 May 2024,
  Sept. 3, 01/05/2024, 1.5.2024, 14:30, 2 pm).

Not flagged: ticker-like tokens (BRK.B, 3M), plain integers such as years in a citation
(`per the 2023 10-K`, `Q3 2024 call`) and anything inside a placeholder (`<PRICE_2>`).

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

from ..report import Problems, RowError
from ..sources import Row
from .base import Record, sft, str_list, text

PLACEHOLDERS = ("<PRICE>", "<CHANGE>", "<TIMESTAMP>")
DEFAULT_RISK_NOTE = "This is not investment advice; check live data before acting."
_TICKER = re.compile(r"^[A-Z]{1,5}(\.[A-Z])?$")
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)  # capitalised only: "may" and "march" the verbs are not dates
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # 1,182.50 or 182.50 or 182
# ISO code -> the symbols written for it. An amount is a number right after or before
# either (`$182.50`, `CHF 90`, `1500 JPY`, `90 €`); ISO codes only as whole words.
CURRENCIES: dict[str, tuple[str, ...]] = {
    "USD": ("$", "US$"), "EUR": ("€",), "GBP": ("£",), "JPY": ("¥", "JP¥"),
    "CNY": ("CN¥", "元", "RMB"), "INR": ("₹", "Rs.", "Rs"), "CHF": ("Fr.", "SFr."),
    "KRW": ("₩",), "CAD": ("C$", "CA$"), "AUD": ("A$", "AU$"), "HKD": ("HK$",),
    "SGD": ("S$",), "BRL": ("R$",), "MXN": ("MX$",), "RUB": ("₽",), "TRY": ("₺",),
}  # fmt: skip
_SYMBOLS = sorted({s for syms in CURRENCIES.values() for s in syms}, key=len, reverse=True)
_UNIT = "|".join([*CURRENCIES, *(re.escape(s) for s in _SYMBOLS)])
_AMOUNT = (
    rf"(?<![\w.$€£¥₹₩₽₺])(?:{_UNIT})[ \t]?(?:{_NUM})"  # $182.50, CHF 90, Rs. 1,500
    rf"|\b(?:{_NUM})[ \t]?(?:{_UNIT})(?![\w$€£¥₹₩₽₺])"  # 1500 JPY, 90 €
)
# Raw values that must be placeholders, in the order they are looked for: what kind of
# value, and the pattern that finds it. A span found by an earlier pattern is not matched
# again (01.05.2024 is a date, not the decimal 01.05). `(?<![\w.])`: not inside a token.
_RAW = (
    ("<TIMESTAMP>", re.compile(
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?"      # 2024-05-01[T14:30]
        rf"|\b{_MONTH}[ \t]+{_DAY}\b(?:,?[ \t]+\d{{4}}\b)?"           # May 1[, 2024]
        rf"|\b{_DAY}[ \t]+{_MONTH}(?:,?[ \t]+\d{{4}}\b)?"             # 1 May [2024]
        r"|(?<![\w.])\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?![\w.])"        # 01/05/2024, 1.5.24
        r"|\b\d{1,2}(?::\d{2})?[ \t]?(?:[ap]\.m\.|[AaPp][Mm]\b)"        # 2 pm, 9:30 a.m.
        r"|\b\d{1,2}:\d{2}(?::\d{2})?\b")),                           # 14:30[:05]
    ("<CHANGE>", re.compile(
        rf"[+\-−]?(?:{_NUM})[ \t]?"
        r"(?:%|(?:percent|per[ \t]cent|pct|bps|bp|basis[ \t]points?)\b)")),  # 2.3 percent
    ("<PRICE>", re.compile(
        _AMOUNT +
        r"|(?<![\w.,])\d{1,3}(?:,\d{3})*\.\d+(?![\w,]|\.\d)"        # bare 182.50, 1,182.5
        r"|(?<![\w.,])\d+\.\d+(?![\w,]|\.\d)")),                     # bare 1182.50
)  # fmt: skip
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*(?:[ :=][^<>\n]{0,40})?>")
_SECTION = re.compile(r"^(Answer|Rationale|Citations|Risk):[ \t]*", re.MULTILINE)
_CITE = re.compile(r"\[(\d+)\]\s*([^\[]*?)\s*(?=;?\s*\[\d+\]|$)", re.DOTALL)


def placeholder_spans(text_: str) -> list[tuple[int, int, str]]:
    """(start, end, placeholder) of every raw price/change/timestamp in text, in order.
    Text inside placeholders is not looked at."""
    masked = _PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), text_)
    found: list[tuple[int, int, str]] = []
    for placeholder, pattern in _RAW:
        for m in pattern.finditer(masked):
            if any(m.start() < end and start < m.end() for start, end, _ in found):
                continue
            value = m.group(0)
            start = m.start() + len(value) - len(value.lstrip())
            found.append((start, start + len(value.strip()), placeholder))
    return sorted(found)


def placeholder_violations(text_: str) -> list[tuple[str, str]]:
    """(raw value, placeholder it should be) for every raw price/change/timestamp in
    text, in the order they appear. Text inside placeholders is not looked at."""
    return [(text_[a:b], placeholder) for a, b, placeholder in placeholder_spans(text_)]


def citation_list(d: Record, key: str = "citations") -> list[str]:
    """Citations as rendered text: strings as given, `{source, timestamp?}` objects as
    `source (timestamp)`. RowError names the entry that is neither."""
    v = d.get(key)
    if v is None:
        raise RowError(f"missing field `{key}`")
    if not isinstance(v, list) or not v:
        raise RowError(
            f"field `{key}` must be a list of strings or {{source, timestamp}} objects "
            "(at least one)"
        )
    out: list[str] = []
    for i, c in enumerate(v):
        if isinstance(c, dict):
            source, stamp = c.get("source"), c.get("timestamp")
            if not isinstance(source, str) or not source.strip():
                raise RowError(f"field `{key}[{i}]`: `source` must be a non-empty string")
            if stamp is not None and not isinstance(stamp, str):
                raise RowError(f"field `{key}[{i}]`: `timestamp` must be a string")
            stamp = (stamp or "").strip()
            out.append(f"{source.strip()} ({stamp})" if stamp else source.strip())
        elif isinstance(c, str) and c.strip():
            out.append(c.strip())
        else:
            raise RowError(
                f"field `{key}[{i}]` must be a non-empty string or a {{source, timestamp}} object"
            )
    return out


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
    check = Problems()
    question, answer = check(text, d, "question"), check(text, d, "answer")
    rationale = check(text, d, "rationale")
    risk = check(text, d, "risk_note", required=False)
    tickers = check(str_list, d, "tickers") or []
    bad = [t for t in tickers if not _TICKER.match(t)]
    if bad:
        check.add(f"field `tickers`: {bad[0]!r} is not a ticker symbol (e.g. AAPL, BRK.B)")
    citations = check(citation_list, d, "citations")
    needs = d.get("context_required")
    if not isinstance(needs, bool):
        check.add("field `context_required` must be true or false")
    context = check(text, d, "context", required=False)
    if needs is True and not context:
        for field, value in (("answer", answer), ("rationale", rationale)):
            for value_, placeholder in placeholder_violations(value or ""):
                check.add(
                    f"field `{field}` has raw value {value_!r} where {placeholder} is required "
                    "(context_required is true and no context is given)"
                )
    check.done()
    target = format_finance_answer(answer, rationale, citations, risk or DEFAULT_RISK_NOTE)
    meta: dict[str, Any] = {"tickers": tickers}
    if not risk:
        meta["risk_note_default"] = True
    return [sft(finance_prompt(question, tickers, context), target, **meta)]
