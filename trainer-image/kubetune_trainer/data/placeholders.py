"""`kubetune data placeholders IN OUT`: rewrite raw prices, changes and timestamps of
finance_qa rows into `<PRICE>`, `<CHANGE>` and `<TIMESTAMP>`.

Only rows that need placeholders are rewritten: `context_required` is true and no
`context` is given (the same rule `prepare` checks, with the same patterns, so every
rewritten row passes it). Only `answer` and `rationale` are touched; citations keep their
dates. Rows that have a context, or do not require one, are copied unchanged. Every
change is reported (row, field, raw value, placeholder) so a reviewer can check it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats.finance import placeholder_spans

FIELDS = ("answer", "rationale")


@dataclass
class Change:
    row: int  # 1-based line (JSONL) or position (JSON list)
    field: str
    raw: str
    placeholder: str


@dataclass
class Rewrite:
    rows: int = 0
    rows_changed: int = 0
    rows_with_context: int = 0  # copied as they are: the values are backed by the context
    rows_not_required: int = 0  # context_required false (or missing): copied as they are
    changes: list[Change] = field(default_factory=list)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for c in self.changes:
            counts[c.placeholder] = counts.get(c.placeholder, 0) + 1
        by = ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "nothing"
        return (
            f"{self.rows} row(s): {self.rows_changed} rewritten ({by}); "
            f"{self.rows_with_context} kept (context given), "
            f"{self.rows_not_required} kept (context_required not true)"
        )

    def lines(self) -> list[str]:
        return [f"row {c.row} {c.field}: {c.raw!r} -> {c.placeholder}" for c in self.changes]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_changed": self.rows_changed,
            "rows_with_context": self.rows_with_context,
            "rows_not_required": self.rows_not_required,
            "changes": [c.__dict__ for c in self.changes],
        }


def replace_raw_values(text: str) -> tuple[str, list[tuple[str, str]]]:
    """text with every raw price/change/timestamp replaced, and (raw, placeholder) pairs."""
    out, done, last = [], [], 0
    for start, end, placeholder in placeholder_spans(text):
        out += [text[last:start], placeholder]
        done.append((text[start:end], placeholder))
        last = end
    out.append(text[last:])
    return "".join(out), done


def rewrite_row(row: dict[str, Any], number: int, report: Rewrite) -> dict[str, Any]:
    report.rows += 1
    context = row.get("context")
    if isinstance(context, str) and context.strip():
        report.rows_with_context += 1
        return row
    if row.get("context_required") is not True:
        report.rows_not_required += 1
        return row
    new = dict(row)
    changed = False
    for name in FIELDS:
        value = row.get(name)
        if not isinstance(value, str):
            continue  # `prepare` reports the wrong type; nothing to rewrite here
        new[name], done = replace_raw_values(value)
        report.changes += [Change(number, name, raw, p) for raw, p in done]
        changed = changed or bool(done)
    report.rows_changed += changed
    return new


class InputError(ValueError):
    """The input file cannot be read as finance rows (message names file and line)."""


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, row) from a JSONL file or a JSON list; InputError on anything else."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        items = list(enumerate(data, start=1))
    else:
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    for n, row in items:
        if not isinstance(row, dict):
            raise InputError(f"{path}:{n}: a row must be a JSON object, got {type(row).__name__}")
    return items


def rewrite_file(src: Path, dst: Path) -> Rewrite:
    """Read src (JSONL or JSON list), write dst as JSONL; the report of what changed.
    Nothing is written when src cannot be read."""
    rows = read_rows(src)
    report = Rewrite()
    out = [rewrite_row(row, n, report) for n, row in rows]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), "utf-8")
    tmp.replace(dst)
    return report
