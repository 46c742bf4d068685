"""FineTuneJob -> PreparedDataset: read, detect, validate, convert, split, fingerprint.

Order: read rows lazily -> detect the format from the first rows (auto) -> rename fields
(field_map) -> validate and convert each row (bad rows: `file:line: reason`) -> stop at
maxExamples -> validation split -> classification label ids -> policy check -> fingerprint.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import chain, islice
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import BadDataError, ConfigError
from kubetune_trainer.records import PreparedDataset

from . import formats
from .fingerprint import fingerprint
from .formats.base import Context, Record
from .report import Report
from .sources import Row, SourceError, read_rows

DETECT_ROWS = 20


def _rows(
    uri: str, streaming: bool, cache_dir: str | None, endpoint: str | None = None
) -> Iterator[Row]:
    try:
        yield from read_rows(uri, streaming, cache_dir, endpoint)
    except SourceError as exc:
        raise BadDataError(str(exc), problems=[str(exc)]) from None


def resolve_format(job: FineTuneJob, head: list[Row]) -> str:
    ds = job.spec.dataset
    if ds.format != "auto":
        return ds.format
    try:
        return formats.detect(head, ds.field_map, ds.source)
    except formats.FormatError as exc:
        raise BadDataError(str(exc), problems=[str(exc)]) from None


def prepare(
    job: FineTuneJob, tokenizer: Any = None, cache_dir: str | None = None
) -> PreparedDataset:
    """Validate and convert the job's dataset; BadDataError lists bad rows (policy fail)."""
    spec, ds = job.spec, job.spec.dataset
    endpoint = spec.output.s3_endpoint  # the job's one S3-compatible store
    rows = _rows(ds.source, ds.streaming, cache_dir, endpoint)
    head = list(islice(rows, DETECT_ROWS))
    fmt = resolve_format(job, head)
    label_field = bool(ds.papers and ds.papers.label_field)
    try:
        kind = formats.kind_for(fmt, spec.objective, spec.model.task, label_field)
    except formats.FormatError as exc:
        if ds.format == "auto":
            raise BadDataError(f"{ds.source}: detected format {fmt}: {exc}") from None
        raise ConfigError(str(exc)) from None
    report = Report(ds.bad_rows, ds.max_errors)
    ctx = Context(ds, spec.objective, spec.model.task, kind, report, tokenizer,
                  spec.training.seed, cache_dir, endpoint)  # fmt: skip
    convert = formats.get(fmt)
    records = list(islice(convert(chain(head, rows), ctx), ds.max_examples))
    if ds.validation.source:
        val_rows = _rows(ds.validation.source, ds.streaming, cache_dir, endpoint)
        validation = list(convert(val_rows, ctx))
        train = records
    elif fmt == "trading":
        from .formats.trading import chronological_split

        horizon = ds.trading.horizon if ds.trading else 5
        train, validation = chronological_split(records, ds.validation.fraction, horizon)
    else:
        train, validation = group_split(records, ds.validation.fraction, spec.training.seed)
    report.check(ds.source)
    if not train:
        raise BadDataError(
            f"{ds.source}: no training examples left (read {report.stats.read}, bad "
            f"{report.stats.skipped}, filtered {report.stats.filtered})"
        )
    label_names: list[str] = []
    if kind == "classification":
        label_names = assign_labels(train + validation, spec.model.num_labels, ds.source)
    report.stats.kept = len(train) + len(validation)
    fp = fingerprint(kind, fmt, [("train", train), ("validation", validation)])
    exact = fmt == "papers" and tokenizer is not None
    return PreparedDataset(kind, fmt, train, validation, fp, report.stats, label_names, exact)  # type: ignore[arg-type]


def group_split(
    records: list[Record], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Seeded split by group (meta.group: a paper, a prompt), so no group straddles both."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    groups: dict[Any, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(rec.get("meta", {}).get("group", f"#{i}"), []).append(i)
    keys = sorted(groups, key=str)
    random.Random(seed).shuffle(keys)
    want = max(1, round(fraction * len(records)))
    held: set[int] = set()
    for key in keys:
        if len(held) >= want or len(held) + len(groups[key]) >= len(records):
            break
        held.update(groups[key])
    train = [r for i, r in enumerate(records) if i not in held]
    return train, [r for i, r in enumerate(records) if i in held]


def assign_labels(records: list[Record], num_labels: int | None, where: str) -> list[str]:
    """Map class labels to ids: integers stay, names are sorted. Check against numLabels."""
    raw = [r["label"] for r in records]
    if all(isinstance(v, int) for v in raw):
        if min(raw) < 0:
            raise BadDataError(f"{where}: integer labels must be >= 0, found {min(raw)}")
        n = max(max(raw) + 1, num_labels or 0)
        names = [str(i) for i in range(n)]
    else:
        names = sorted({str(v) for v in raw})
        for r in records:
            r.setdefault("meta", {})["label_name"] = str(r["label"])
            r["label"] = names.index(str(r["label"]))
    if num_labels is not None and len(names) > num_labels:
        raise BadDataError(
            f"{where}: {len(names)} classes ({', '.join(names[:10])}) but model.numLabels is "
            f"{num_labels}; set model.numLabels: {len(names)}"
        )
    return names
