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


_MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """`data[path]`, else the dotted path into nested objects (`data.q`; a number indexes a
    list: `turns.0.text`); _MISSING when it leads nowhere."""
    if isinstance(data, dict) and path in data:
        return data[path]
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def rename(data: dict[str, Any], field_map: dict[str, str]) -> dict[str, Any]:
    """field_map is {format_field: source_field}: `{question: Q}` reads `question` from `Q`
    (or from a dotted path, `{question: data.q}`)."""
    if not field_map:
        return data
    out = dict(data)
    for target, src in field_map.items():
        if target == src:
            continue
        if src in out:
            out[target] = out.pop(src)
        elif (value := lookup(data, src)) is not _MISSING:
            out[target] = value
    return out


def mapped_hint(reason: str, field_map: dict[str, str]) -> str:
    """A missing mapped field says where it was looked for."""
    for target, src in field_map.items():
        missing = f"missing field `{target}`"
        if missing in reason and target != src:
            reason = reason.replace(missing, f"{missing} (read from `{src}` by dataset.fieldMap)")
    return reason


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
            ctx.report.problem(row.where, mapped_hint(str(exc), ctx.dataset.field_map))
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
