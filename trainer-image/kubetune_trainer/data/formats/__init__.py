"""Dataset formats: detection by keys, and which record kind each format makes.

A format turns rows into records: `get(name)(rows, ctx) -> Iterator[record]`.
`classification` is not a spec format: `auto` resolves `{text, label}` rows to it for
model.task sequence_classification.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..sources import Row
from .base import Context, Record, each_row, rename, text

# Keys that identify a format; any one alternative is enough. When a row fits several,
# a format whose matched keys include the other's wins (finance_qa over qa).
FORMAT_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "chat": (("messages",),),
    "instruction": (("instruction", "output"), ("prompt", "response"), ("prompt", "completion")),
    "qa": (("question", "answer"),),
    "finance_qa": (("question", "answer", "rationale", "tickers", "citations"),),
    "preference": (("prompt", "chosen", "rejected"),),
    "ranked": (("prompt", "responses"),),
    "rated": (("prompt", "output", "rating"),),
    "papers": (("title", "abstract"), ("title", "full_text")),
    "trading": (("date", "ticker", "open", "high", "low", "close", "volume"),),
    "classification": (("text", "label"),),
}


class FormatError(ValueError):
    """The format cannot be detected, or cannot make the records the job needs."""


def _keys_help() -> str:
    return "; ".join(
        f"{name}: {' or '.join('{' + ', '.join(alt) + '}' for alt in alts)}"
        for name, alts in FORMAT_KEYS.items()
    )


def match(keys: set[str]) -> list[str]:
    """Formats whose keys the row has. A format whose keys are a subset of another match's
    is dropped (finance_qa beats qa); more than one left means ambiguous."""
    found: dict[str, set[str]] = {}
    for name, alts in FORMAT_KEYS.items():
        fits = [set(alt) for alt in alts if set(alt) <= keys]
        if fits:
            found[name] = max(fits, key=len)
    return [n for n, ks in found.items() if not any(ks < other for other in found.values())]


def detect(rows: list[Row], field_map: dict[str, str], where: str) -> str:
    """The format of the first decoded rows, or FormatError saying what keys each needs."""
    votes: Counter[str] = Counter()
    seen: list[str] = []
    for row in rows:
        if row.data is None:
            continue
        keys = set(rename(row.data, field_map))
        seen = sorted(keys)
        found = match(keys)
        if len(found) > 1:
            raise FormatError(
                f"{row.where}: cannot tell the format: keys {seen} fit {' and '.join(found)}; "
                f"set dataset.format (keys per format: {_keys_help()})"
            )
        votes.update(found)  # rows that fit nothing become bad rows later, if a format wins
    if not votes:
        raise FormatError(
            f"{where}: unknown data format (keys {seen}); set dataset.format or map your "
            f"fields with dataset.fieldMap. Formats and the keys each needs: {_keys_help()}"
        )
    (top, n), *rest = votes.most_common()
    if rest and rest[0][1] == n:
        raise FormatError(
            f"{where}: rows disagree on the format ({top} vs {rest[0][0]}); set dataset.format"
        )
    return top


def _row_wise(fn: Callable[[Record, Row], list[Record]]) -> Callable[..., Iterator[Record]]:
    def run(rows: Iterable[Row], ctx: Context) -> Iterator[Record]:
        return each_row(rows, ctx, fn)

    return run


def get(name: str) -> Callable[[Iterable[Row], Context], Iterator[Record]]:
    """The converter for a format (imports the heavier formats only when used)."""
    from . import finance, preference, qa

    if name == "papers":
        from .papers import papers_records

        return papers_records
    if name == "trading":
        from .trading import trading_records

        return trading_records
    table: dict[str, Any] = {
        "qa": _row_wise(qa.qa_row),
        "instruction": _row_wise(qa.instruction_row),
        "chat": _row_wise(qa.chat_row),
        "finance_qa": _row_wise(finance.finance_row),
        "preference": _row_wise(preference.preference_row),
        "ranked": _row_wise(preference.ranked_row),
        "rated": preference.rated_records,
        "classification": _row_wise(classification_row),
    }
    return table[name]


def classification_row(d: Record, row: Row) -> list[Record]:
    from ..report import RowError

    label = d.get("label")
    if label is None or (isinstance(label, str) and not label.strip()):
        raise RowError("missing field `label`")
    if isinstance(label, bool) or not isinstance(label, int | str):
        raise RowError(f"field `label` must be a class name or an integer, got {label!r}")
    return [{"text": text(d, "text"), "label": label}]


def kind_for(fmt: str, objective: str, task: str, has_label_field: bool = False) -> str:
    """The record kind a format makes for this objective and model task, or FormatError."""
    if task == "sequence_classification":
        if fmt == "classification" or (fmt == "papers" and has_label_field):
            return "classification"
        raise FormatError(
            f"model.task sequence_classification needs {{text, label}} rows or format papers "
            f"with dataset.papers.labelField; format {fmt!r} has no class labels"
        )
    if task == "masked_lm":
        if fmt == "papers":
            return "text"
        raise FormatError(f"model.task masked_lm trains on format papers, not {fmt!r}")
    if objective == "sft":
        if fmt == "papers":
            return "text"
        if fmt in ("qa", "instruction", "chat", "finance_qa", "trading", "rated"):
            return "sft"
    if objective == "dpo" and fmt in ("preference", "rated"):
        return "preference"
    if objective == "ranking" and fmt == "ranked":
        return "ranked"
    raise FormatError(
        f"dataset format {fmt!r} cannot train objective {objective!r} "
        "(sft: instruction, qa, chat, papers, trading, finance_qa, rated; dpo: preference, "
        "rated; ranking: ranked)"
    )
