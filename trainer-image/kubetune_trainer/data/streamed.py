"""Training data larger than memory: prepared records stay on disk, read when needed.

With `dataset.streaming: true`, or a local source over STREAM_ABOVE_BYTES, training
prepares its data with `prepare_to_files` (one row and one record in memory at a time,
the same records, splits and fingerprint as in memory) into
`$KUBETUNE_CACHE/prepared/<key>/`, and hands the engine `JsonlRecords`: sequences that
read the JSONL line by line (len, iteration, indexing through an 8-byte-per-record offset
index built on first use). Tokenization streams them into the memory-mapped Arrow store
(arrow_tokens.py), which the Trainer reads by index: a resumed run skips to its position
by sampler index (no example before it is read again), and each DDP rank's sampler reads
only its own share.

Prepared once: when every source is local, the key covers the sha256 of each source file
(and the spec fields and tokenizer that change records), and `prepared.json` (written last:
the counts, fingerprint and statistics) marks a complete entry. The next start with the
same data and spec (a retry, a resume, another run on this host) hashes the sources
(~1 s per GB) and reads that summary instead of preparing again. An entry whose summary is
missing or whose files are not at their recorded sizes is prepared again. Sources elsewhere
(s3://) are prepared on every start; their tokenized data is still reused (token_cache.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import scheme_of
from kubetune_trainer.records import PreparedDataset, PreparedFiles, PrepStats
from kubetune_trainer.storage.local import atomic_write_bytes

# Above this a source is not held as Python records (~3x its size in RAM): 64 MiB.
STREAM_ABOVE_BYTES = int(os.environ.get("KUBETUNE_STREAM_ABOVE_BYTES", str(64 << 20)))
SUMMARY = "prepared.json"
SUMMARY_VERSION = 1
log = logging.getLogger("kubetune_trainer.data")


class JsonlRecords(Sequence[dict[str, Any]]):
    """The records of a prepared JSONL split, read from disk on demand."""

    def __init__(self, path: str | Path, count: int) -> None:
        self.path, self.count = Path(path), count
        self._offsets: Any = None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def _index(self) -> Any:
        if self._offsets is None:
            import numpy as np

            offsets = np.zeros(self.count, dtype=np.int64)
            pos = 0
            with self.path.open("rb") as fh:
                for i, line in enumerate(fh):
                    offsets[i] = pos
                    pos += len(line)
            self._offsets = offsets
        return self._offsets

    def _read(self, fh: Any, i: int) -> dict[str, Any]:
        fh.seek(int(self._index()[i]))
        return json.loads(fh.readline())

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        with self.path.open("rb") as fh:
            if isinstance(i, slice):
                return [self._read(fh, j) for j in range(*i.indices(self.count))]
            if i < 0:
                i += self.count
            if not 0 <= i < self.count:
                raise IndexError(i)
            return self._read(fh, i)


def _local_sources(job: FineTuneJob) -> list[Path] | None:
    """The local paths the records are read from; None when one is not local (s3://)."""
    ds = job.spec.dataset
    uris = [ds.source, ds.validation.source, ds.trading.news if ds.trading else None]
    paths = []
    for uri in filter(None, uris):
        if scheme_of(uri) not in ("", "file"):
            return None
        paths.append(Path(uri[len("file://") :] if uri.startswith("file://") else uri))
    return paths


def streams(job: FineTuneJob) -> bool:
    if job.spec.dataset.streaming:
        return True
    try:
        paths = _local_sources(job) or []
        return bool(paths) and paths[0].is_file() and paths[0].stat().st_size > STREAM_ABOVE_BYTES
    except OSError:
        return False


def source_identity(job: FineTuneJob) -> list[list[Any]] | None:
    """[path, size, sha256] of every local data file behind the job's sources, or None
    when a source is not local or cannot be read (then nothing is reused)."""
    from .sources import SourceError, data_files

    paths = _local_sources(job)
    if paths is None:
        return None
    out: list[list[Any]] = []
    try:
        for path in paths:
            for file, _ in data_files(path, str(path)):
                h = hashlib.sha256()
                with file.open("rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                out.append([str(file), file.stat().st_size, h.hexdigest()])
    except (OSError, SourceError):
        return None  # prepare() reports the problem with its own words
    return out


def _folder(job: FineTuneJob, tokenizer: Any, sources: list[list[Any]] | None) -> Path:
    from kubetune_trainer.modeling.cache import cache_root

    from .token_cache import tokenizer_identity

    spec = job.spec
    what = {
        "dataset": spec.dataset.model_dump(mode="json"),
        "objective": spec.objective,
        "task": spec.model.task,
        "seed": spec.training.seed,
        "tokenizer": None if tokenizer is None else tokenizer_identity(tokenizer),
        "sources": sources,
        "version": SUMMARY_VERSION,
    }
    # Ranks of one host may write here at once: prepare_to_files writes per-process .part
    # files and renames them into place, and both hold the same records (same job, data).
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return cache_root() / "prepared" / key[:24]


def _summary(files: PreparedFiles) -> bytes:
    doc = dataclasses.asdict(files)
    for name in ("train", "validation"):
        path = Path(doc.pop(f"{name}_path"))
        doc[name] = {"file": path.name, "bytes": path.stat().st_size}
    return json.dumps({"version": SUMMARY_VERSION, **doc}, sort_keys=True).encode()


def _reuse(folder: Path) -> PreparedFiles | None:
    """The complete entry in `folder`, or None (absent, torn, or files not at their sizes)."""
    try:
        doc = json.loads((folder / SUMMARY).read_text())
        if doc.pop("version") != SUMMARY_VERSION:
            return None
        paths = {}
        for name in ("train", "validation"):
            part = doc.pop(name)
            paths[name] = folder / Path(part["file"]).name
            if paths[name].stat().st_size != int(part["bytes"]):
                log.warning("prepared data %s ignored (prepared again): %s changed", folder,
                            paths[name].name)  # fmt: skip
                return None
        stats = PrepStats(**doc.pop("stats"))
        train, validation = str(paths["train"]), str(paths["validation"])
        return PreparedFiles(train_path=train, validation_path=validation, stats=stats, **doc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def prepare_for_training(job: FineTuneJob, tokenizer: Any = None) -> PreparedDataset:
    """`prepare(job)` in memory, or streamed to disk when the data is large (see above)."""
    from .evict import evict, touch
    from .prepare import prepare, prepare_to_files

    if not streams(job):
        return prepare(job, tokenizer)
    sources = source_identity(job)
    folder = _folder(job, tokenizer, sources)
    files = _reuse(folder) if sources is not None else None
    if files is not None:
        touch(folder)
        log.info("data: prepared records reused from %s (no preparation)", folder)
    else:
        (folder / SUMMARY).unlink(missing_ok=True)
        files = prepare_to_files(job, folder, tokenizer)
        if sources is not None:
            atomic_write_bytes(folder / SUMMARY, _summary(files))  # last: marks it complete
            evict(folder.parent)
    return PreparedDataset(
        files.kind,
        files.format,
        JsonlRecords(files.train_path, files.train_examples),  # type: ignore[arg-type]
        JsonlRecords(files.validation_path, files.validation_examples),  # type: ignore[arg-type]
        files.fingerprint,
        files.stats,
        files.label_names,
        files.exact_chunks,
    )
