"""FineTuneJob -> prepared records: in memory (`prepare`) or streamed to JSONL (`prepare_to_files`).

Order: read rows lazily -> detect the format from the first rows (auto) -> rename fields
(field_map) -> validate and convert each row (bad rows: `file:line: reason`) -> sample
maxExamples across the file (data.sampling) -> validation split -> policy check ->
classification label ids -> fingerprint.

Both entry points run the same pipeline; only where a split's records go differs (a list,
or a JSONL file written record by record while its fingerprint is computed). So the same
job and data give the same records, splits and fingerprint either way.

Validation split (`validation.fraction`, every format but trading): each record belongs to
a group (`meta.group`: a paper, a prompt, an answer its paraphrases share; otherwise the
record itself), and the group's score is sha256(seed, group) read as a number in [0, 1).
Groups scoring below the fraction validate; the assignment of one record never depends on
the others, so a stream can be split as it is read. Two corrections for small data, with
the same result in memory and streamed: when no group validates (and there are at least
two), the lowest-scoring group does; when every group validates, the highest-scoring one
trains. `validation.source` replaces the split (all of `source` trains).

Streaming: `prepare_to_files` holds one row and one record at a time, plus what a format
needs as a whole: trading keeps its price series and examples in memory (its split is
chronological: the latest dates validate), rated rows for DPO are grouped by prompt in
memory, and a JSON list is read whole unless dataset.streaming is true. The small-data
corrections and classification label ids (names are only known at the end) rewrite the
written files once, reading them back line by line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Protocol, cast

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import BadDataError, ConfigError
from kubetune_trainer.records import PreparedDataset, PreparedFiles, PrepStats, RecordKind

from . import formats
from .decoding import Decoding
from .duplicates import Dedupe
from .fingerprint import SplitHash, combine
from .formats.base import Context, Record
from .progress import RateLog
from .report import Report
from .sampling import sample
from .sources import Row, SourceError, read_rows
from .split import Groups, group_key, split_score, validation_note

DETECT_ROWS = 20


def _rows(
    uri: str,
    streaming: bool,
    cache_dir: str | None,
    endpoint: str | None = None,
    decoding: Decoding | None = None,
) -> Iterator[Row]:
    try:
        yield from read_rows(uri, streaming, cache_dir, endpoint, decoding)
    except SourceError as exc:
        raise BadDataError(str(exc), problems=[str(exc)]) from None


def _counted(rows: Iterable[Row]) -> Iterator[Row]:
    """Rows/s of the read, in a terminal bar or a log line every few seconds (progress.py)."""
    rate = RateLog("prepare")
    try:
        for row in rows:
            rate.add(1)
            yield row
    finally:
        rate.close()


def resolve_format(job: FineTuneJob, head: list[Row]) -> str:
    ds = job.spec.dataset
    if ds.format != "auto":
        return ds.format
    try:
        return formats.detect(head, ds.field_map, ds.source)
    except formats.FormatError as exc:
        raise BadDataError(str(exc), problems=[str(exc)]) from None


# --- where records go ------------------------------------------------------------------


class _Split(Protocol):
    hash: SplitHash

    def add(self, record: Record) -> None: ...
    def __iter__(self) -> Iterator[Record]: ...


@dataclass
class _ListSplit:
    records: list[Record] = field(default_factory=list)
    hash: SplitHash = field(default_factory=SplitHash)

    def add(self, record: Record) -> None:
        self.records.append(record)
        self.hash.add(record)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)


def jsonl_line(record: Record) -> str:
    """How a prepared record is written: one JSON object a line, keys sorted."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


class _FileSplit:
    """Records appended to a JSONL file as they come; read back line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = SplitHash()
        self._fh: Any = path.open("w", encoding="utf-8")

    def add(self, record: Record) -> None:
        self._fh.write(jsonl_line(record))
        self.hash.add(record)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __iter__(self) -> Iterator[Record]:
        self.close()
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)


# --- the pipeline ----------------------------------------------------------------------


@dataclass
class _Result:
    kind: RecordKind
    fmt: str
    train: Any  # the _Split kind new_split makes
    validation: Any
    stats: PrepStats
    label_names: list[str]
    fingerprint: str
    exact: bool


def _run(
    job: FineTuneJob,
    tokenizer: Any,
    cache_dir: str | None,
    new_split: Callable[[str], _Split],
) -> _Result:
    spec, ds = job.spec, job.spec.dataset
    endpoint = spec.output.s3_endpoint  # the job's one S3-compatible store
    report = Report(ds.bad_rows, ds.max_errors)
    decoding = Decoding(ds.encoding, ds.on_decode_error, report.warn)
    seen = Dedupe(report, ds.dedupe)  # shared by the source and the validation source
    rows = _counted(seen.rows(_rows(ds.source, ds.streaming, cache_dir, endpoint, decoding)))
    head = list(islice(rows, DETECT_ROWS))
    fmt = resolve_format(job, head)
    label_field = bool(ds.papers and ds.papers.label_field)
    try:
        kind = cast(RecordKind, formats.kind_for(fmt, spec.objective, spec.model.task,
                                                 label_field))  # fmt: skip
    except formats.FormatError as exc:
        if ds.format == "auto":
            raise BadDataError(f"{ds.source}: detected format {fmt}: {exc}") from None
        raise ConfigError(str(exc)) from None
    ctx = Context(ds, spec.objective, spec.model.task, kind, report, tokenizer,
                  spec.training.seed, cache_dir, endpoint)  # fmt: skip
    convert = formats.get(fmt)
    records: Iterable[Record] = convert(chain(head, rows), ctx)
    if ds.max_examples is not None:

        def stratum(rec: Record) -> str:
            return str(rec["meta"]["ticker"]) if fmt == "trading" else group_key(rec)

        records = sample(list(records), ds.max_examples, spec.training.seed, stratum)
    train, validation = new_split("train"), new_split("validation")
    labels: set[Any] = set()

    def add(split: _Split, rec: Record) -> None:
        if kind == "classification":
            labels.add(rec["label"])
        split.add(rec)

    move: tuple[str, bool] | None = None
    fraction, seed = ds.validation.fraction, spec.training.seed
    groups = Groups()
    if ds.validation.source:
        for rec in records:
            add(train, rec)
        val_rows = seen.rows(_rows(ds.validation.source, ds.streaming, cache_dir, endpoint,
                                   decoding))  # fmt: skip
        for rec in convert(val_rows, ctx):
            add(validation, rec)
    elif fmt == "trading":
        from .formats.trading import chronological_split

        horizon = ds.trading.horizon if ds.trading else 5
        tr, va = chronological_split(list(records), fraction, horizon)
        for rec in tr:
            add(train, rec)
        for rec in va:
            add(validation, rec)
    else:
        for rec in records:
            key = group_key(rec)
            score = split_score(key, seed)
            validates = fraction > 0 and score < fraction
            add(validation if validates else train, rec)
            groups.see(key, score, validates)
        move = groups.move(train.hash.count, validation.hash.count, fraction)
    report.check(ds.source)
    if not train.hash.count and (move is None or move[1]):
        s = report.stats
        rules = ", ".join(f"{n} by {rule}" for rule, n in s.filtered_by.items())
        raise BadDataError(
            f"{ds.source}: no training examples left (read {s.read}, bad {s.skipped}, "
            f"filtered {s.filtered}{f': {rules}' if rules else ''})"
        )
    names: list[str] = []
    relabel = False
    if kind == "classification":
        names, relabel = label_names(labels, spec.model.num_labels, ds.source)
    if move is not None or relabel:
        train, validation = _rewrite(train, validation, move, names if relabel else None,
                                     new_split)  # fmt: skip
    report.stats.kept = train.hash.count + validation.hash.count
    report.stats.validation_note = validation_note(
        job, fmt, validation.hash.count, groups if not ds.validation.source and fmt != "trading"
        else None)  # fmt: skip
    fp = combine(kind, fmt, [("train", train.hash), ("validation", validation.hash)])
    exact = fmt == "papers" and tokenizer is not None
    return _Result(kind, fmt, train, validation, report.stats, names, fp, exact)


def _rewrite(
    train: _Split,
    validation: _Split,
    move: tuple[str, bool] | None,
    names: list[str] | None,
    new_split: Callable[[str], _Split],
) -> tuple[_Split, _Split]:
    """Move one group across (appended after the other split's records, in order) and/or
    turn class names into ids. Reads each split once."""
    key, to_validation = move if move is not None else (None, False)
    new_train, new_val = new_split("train"), new_split("validation")

    def fix(rec: Record) -> Record:
        return with_label_id(rec, names) if names is not None else rec

    if to_validation:
        for rec in validation:
            new_val.add(fix(rec))
        for rec in train:
            (new_val if group_key(rec) == key else new_train).add(fix(rec))
    else:
        for rec in train:
            new_train.add(fix(rec))
        for rec in validation:
            (new_train if key is not None and group_key(rec) == key else new_val).add(fix(rec))
    return new_train, new_val


def label_names(
    labels: Iterable[Any], num_labels: int | None, where: str
) -> tuple[list[str], bool]:
    """(class names by id, whether records need their names turned into ids). Integers stay
    (names "0".."n-1"); names are sorted. Checked against numLabels."""
    raw = list(labels)
    relabel = not all(isinstance(v, int) for v in raw)
    if not relabel:
        if min(raw) < 0:
            raise BadDataError(f"{where}: integer labels must be >= 0, found {min(raw)}")
        names = [str(i) for i in range(max(max(raw) + 1, num_labels or 0))]
    else:
        names = sorted({str(v) for v in raw})
    if num_labels is not None and len(names) > num_labels:
        raise BadDataError(
            f"{where}: {len(names)} classes ({', '.join(names[:10])}) but model.numLabels is "
            f"{num_labels}; set model.numLabels: {len(names)}"
        )
    return names, relabel


def with_label_id(record: Record, names: list[str]) -> Record:
    """The record with its class name as an id, the name kept in meta.label_name."""
    name = str(record["label"])
    meta = {**record.get("meta", {}), "label_name": name}
    return {**record, "label": names.index(name), "meta": meta}


# --- entry points ----------------------------------------------------------------------


def prepare(
    job: FineTuneJob, tokenizer: Any = None, cache_dir: str | None = None
) -> PreparedDataset:
    """Validate and convert the job's dataset; BadDataError lists bad rows (policy fail)."""
    r = _run(job, tokenizer, cache_dir, lambda name: _ListSplit())
    return PreparedDataset(r.kind, r.fmt, r.train.records, r.validation.records,
                           r.fingerprint, r.stats, r.label_names, r.exact)  # fmt: skip


def prepare_to_files(
    job: FineTuneJob,
    folder: str | Path,
    tokenizer: Any = None,
    cache_dir: str | None = None,
) -> PreparedFiles:
    """Like `prepare`, but each record is written to folder/train.jsonl or
    folder/validation.jsonl as it is made (see the module doc for what stays in memory).
    The files appear only when preparation succeeds; a failure leaves none half-written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    made: list[_FileSplit] = []

    def new_split(name: str) -> _Split:
        split = _FileSplit(out / f".{name}.jsonl.{os.getpid()}.{len(made)}.part")
        made.append(split)
        return split

    try:
        r = _run(job, tokenizer, cache_dir, new_split)
        for split in made:
            split.close()
        paths = {}
        for name, split in (("train", r.train), ("validation", r.validation)):
            paths[name] = out / f"{name}.jsonl"
            os.replace(split.path, paths[name])
    finally:
        for split in made:
            split.close()
            split.path.unlink(missing_ok=True)
    return PreparedFiles(r.kind, r.fmt, str(paths["train"]), str(paths["validation"]),
                         r.train.hash.count, r.validation.hash.count, r.fingerprint, r.stats,
                         r.label_names, r.exact)  # fmt: skip
