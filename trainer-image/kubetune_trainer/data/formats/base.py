"""What every format shares: the context it runs in, row-wise conversion and field checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kubetune_api.spec_data import DatasetSpec

from ..report import Report, RowError
from ..sources import Row

Record = dict[str, Any]


@dataclass
class Context:
    dataset: DatasetSpec
    objective: str  # sft | dpo | ranking
    task: str  # causal_lm | sequence_classification | masked_lm
    kind: str  # the record kind being produced
    report: Report
    tokenizer: Any = None  # optional; papers chunk by its tokens when given
    seed: int = 42
    cache_dir: str | None = None
    endpoint: str | None = None  # S3-compatible endpoint for s3:// side files (news)


def rename(data: dict[str, Any], field_map: dict[str, str]) -> dict[str, Any]:
    """field_map is {format_field: source_field}: `{question: Q}` reads `question` from `Q`."""
    if not field_map:
        return data
    out = dict(data)
    for target, src in field_map.items():
        if src in out and target != src:
            out[target] = out.pop(src)
    return out


def each_row(
    rows: Iterable[Row], ctx: Context, convert: Callable[[Record, Row], list[Record]]
) -> Iterator[Record]:
    """Run `convert` on every decoded row; a RowError becomes a `file:line: reason` problem."""
    for row in rows:
        ctx.report.stats.read += 1
        if row.data is None:
            ctx.report.problem(row.where, row.error or "unreadable row")
            continue
        try:
            out = convert(rename(row.data, ctx.dataset.field_map), row)
        except RowError as exc:
            ctx.report.problem(row.where, str(exc))
            continue
        for rec in out:
            meta = rec.setdefault("meta", {})
            meta.setdefault("source", row.where)
            if "completion" in rec:  # paraphrased questions with one answer split together
                meta.setdefault("group", rec["completion"])
        yield from out


def text(d: Record, key: str, required: bool = True) -> str:
    """A non-empty string field (stripped of surrounding whitespace)."""
    if key not in d or d[key] is None:
        if required:
            raise RowError(f"missing field `{key}`")
        return ""
    v = d[key]
    if not isinstance(v, str):
        raise RowError(f"field `{key}` must be a string, got {type(v).__name__}")
    if required and not v.strip():
        raise RowError(f"field `{key}` is empty")
    return v.strip()


def str_list(d: Record, key: str, min_len: int = 1) -> list[str]:
    v = d.get(key)
    if v is None:
        raise RowError(f"missing field `{key}`")
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RowError(f"field `{key}` must be a list of strings")
    items = [x.strip() for x in v]
    if any(not x for x in items):
        raise RowError(f"field `{key}` has an empty entry")
    if len(items) < min_len:
        raise RowError(f"field `{key}` needs at least {min_len} item(s)")
    return items


def number(d: Record, key: str) -> float:
    v = d.get(key)
    if v is None or v == "":
        raise RowError(f"missing field `{key}`")
    if isinstance(v, bool):
        raise RowError(f"field `{key}` must be a number, got bool")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise RowError(f"field `{key}` must be a number, got {v!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise RowError(f"field `{key}` must be a finite number, got {v!r}")
    return f


def sft(prompt: str, completion: str, system: str | None = None, **meta: Any) -> Record:
    """An SFT record: messages kept, prompt/completion derived (templates apply later)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    rec: Record = {"prompt": prompt, "completion": completion, "messages": messages}
    if meta:
        rec["meta"] = meta
    return rec
