"""Training data larger than memory: prepared records stay on disk, read when needed.

With `dataset.streaming: true`, or a local source file over STREAM_ABOVE_BYTES, training
prepares its data with `prepare_to_files` (one row and one record in memory at a time,
the same records, splits and fingerprint as in memory) into
`$KUBETUNE_CACHE/prepared/<key>/`, and hands the engine `JsonlRecords`: sequences that
read the JSONL line by line (len, iteration, indexing through an 8-byte-per-record offset
index built on first use). Tokenization streams them into the memory-mapped Arrow store
(arrow_tokens.py), which the Trainer reads by index: a resumed run skips to its position
by sampler index (no example before it is read again), and each DDP rank's sampler reads
only its own share.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset

STREAM_ABOVE_BYTES = int(os.environ.get("KUBETUNE_STREAM_ABOVE_BYTES", str(1 << 30)))


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


def streams(job: FineTuneJob) -> bool:
    ds = job.spec.dataset
    if ds.streaming:
        return True
    try:
        return os.path.isfile(ds.source) and os.path.getsize(ds.source) > STREAM_ABOVE_BYTES
    except OSError:
        return False


def _folder(job: FineTuneJob, with_tokenizer: bool) -> Path:
    from kubetune_trainer.modeling.cache import cache_root

    spec = job.spec
    what = {
        "dataset": spec.dataset.model_dump(mode="json"),
        "objective": spec.objective,
        "task": spec.model.task,
        "seed": spec.training.seed,
        "tokenizer": with_tokenizer,
    }
    # Ranks of one host may write here at once: prepare_to_files writes per-process .part
    # files and renames them into place, and both hold the same records (same job, data).
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return cache_root() / "prepared" / key[:24]


def prepare_for_training(job: FineTuneJob, tokenizer: Any = None) -> PreparedDataset:
    """`prepare(job)` in memory, or streamed to disk when the data is large (see above)."""
    from .prepare import prepare, prepare_to_files

    if not streams(job):
        return prepare(job, tokenizer)
    files = prepare_to_files(job, _folder(job, tokenizer is not None), tokenizer)
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
