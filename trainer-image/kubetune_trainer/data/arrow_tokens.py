"""Tokenized examples as Apache Arrow (Hugging Face `datasets`): batched, int32, memory-mapped.

`tokenize_to_arrow` turns records into one Arrow file per split, in three steps:

1. the records are written as Arrow columns (`records.arrow`, record_columns), in batches;
2. `Dataset.map(batched=True)` renders the template and tokenizes BATCH rows per call
   with the fast tokenizer (`num_proc` workers for large sets when there are cores, each
   tokenizing on one thread), through tokenize.py's batch functions (the same rules as in
   memory; SFT columns come back as an Arrow table built from flat numpy buffers);
3. the result is `tokens.arrow` (or one shard per worker): input_ids and labels as int32
   lists (a classification label as one int), the example's length and whether it was cut.

Reads are memory-mapped (`Dataset.from_file`): the process holds pages, not Python ints
(a token costs 4 bytes on disk instead of ~49 in a Python list). `ArrowTokens` offers
what the recipes used from TokenizedSet (len, [i], lengths, truncated).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from kubetune_api.spec_data import DatasetSpec

from .chat_frame import roles_of
from .progress import RateLog
from .templates import messages_of, resolve
from .tokenize import BATCH, BATCHES, IGNORE, sft_pieces

RECORDS = "records.arrow"
PARALLEL_FROM = 20_000  # examples: below this, starting workers costs more than it saves


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def workers_for(n: int) -> int | None:
    """num_proc for `n` examples: every core for a large set, none (in process) otherwise."""
    c = min(cores(), 8)
    return c if c > 1 and n >= PARALLEL_FROM else None


def features_for(kind: str) -> Any:
    from datasets import Features, Sequence, Value

    label = Value("int64") if kind == "classification" else Sequence(Value("int32"))
    return Features(
        input_ids=Sequence(Value("int32")),
        labels=label,
        length=Value("int32"),
        truncated=Value("bool"),
    )


def record_columns(kind: str) -> list[str]:
    """The records file's columns: an SFT conversation as its turns' roles and contents
    (no JSON to write or parse; `record` holds JSON only for turns with more than a role
    and a string content); other kinds one JSON string a record."""
    return ["roles", "contents", "record"] if kind == "sft" else ["record"]


def _row(kind: str, rec: dict[str, Any]) -> tuple[Any, ...]:
    if kind != "sft":
        return (json.dumps(rec, ensure_ascii=False),)
    msgs = messages_of(rec)  # (the system prompt is added by sft_batch, as in memory)
    if roles_of(msgs) is None:
        return [], [], json.dumps({"messages": msgs}, ensure_ascii=False)
    return [m["role"] for m in msgs], [m["content"] for m in msgs], ""


def _records(kind: str, batch: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """What _row wrote, back as records for tokenize.py's batch functions."""
    if kind != "sft":
        return [json.loads(r) for r in batch["record"]]
    return [
        json.loads(rec) if rec else
        {"messages": [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]}
        for roles, contents, rec in zip(batch["roles"], batch["contents"], batch["record"],
                                        strict=True)
    ]  # fmt: skip


@contextmanager
def _serial_tokenizer(procs: int | None) -> Iterator[None]:
    """With worker processes, each worker's Rust tokenizer runs on one thread: unset, a
    forked worker starts its own thread pool (measured: 3 threads a worker), so 2 workers
    ran 4+ busy threads on 2 cores. In process (no workers) it keeps its threads."""
    if not procs or procs < 2 or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        del os.environ["TOKENIZERS_PARALLELISM"]


def write_records(records: Iterable[dict[str, Any]], path: Path, kind: str = "sft") -> int:
    """Records as Arrow columns (record_columns; the stream format Dataset.from_file reads)."""
    import pyarrow as pa

    text, turns = pa.large_string(), pa.list_(pa.large_string())
    types = {"roles": turns, "contents": turns, "record": text}
    names = record_columns(kind)
    schema = pa.schema([(c, types[c]) for c in names])
    n, cols = 0, [[] for _ in names]

    def flush(writer: Any) -> None:
        arrays = [pa.array(col, types[c]) for col, c in zip(cols, names, strict=True)]
        writer.write_batch(pa.record_batch(arrays, schema=schema))

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for rec in records:
            for col, value in zip(cols, _row(kind, rec), strict=True):
                col.append(value)
            if len(cols[0]) == 4 * BATCH:
                flush(writer)
                n, cols = n + len(cols[0]), [[] for _ in names]
        if cols[0]:  # (no rows: tokenize_to_arrow writes an empty split, not read here)
            flush(writer)
            n += len(cols[0])
    return n


# --- the batch function (module level: picklable for num_proc workers) ------------------


def _batch(
    batch: dict[str, list[Any]], tokenizer: Any, dataset: DatasetSpec, kind: str, total: int
) -> dict[str, list[Any]]:
    global _RATE
    if _RATE is None:  # one per process: each worker reports its own share
        _RATE = RateLog("tokenize", total)
    recs = _records(kind, batch)
    if kind == "sft":
        out = _sft_table(*sft_pieces(recs, tokenizer, dataset), dataset.completion_only_loss)
    else:
        out = BATCHES[kind](recs, tokenizer, dataset)
    _RATE.add(len(batch["record"]))
    return out


def _sft_table(ps: list[list[int]], cs: list[list[int]], cut: list[bool], masked: bool) -> Any:
    """sft_batch's columns built as Arrow arrays from flat numpy buffers: no per-row lists
    (prompt + completion, labels) and no per-row conversion by the datasets writer."""
    import numpy as np
    import pyarrow as pa

    n = len(ps)
    plen = np.fromiter(map(len, ps), np.int64, n)
    length = plen + np.fromiter(map(len, cs), np.int64, n)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(length, out=offsets[1:])
    rows = chain.from_iterable(zip(ps, cs, strict=True))  # p0, c0, p1, c1, ...
    ids = np.fromiter(chain.from_iterable(rows), np.int32, int(offsets[-1]))
    labels = ids
    if masked:  # the prompt's positions: label IGNORE
        labels = ids.copy()
        at = np.arange(len(ids)) - np.repeat(offsets[:-1], length)
        labels[at < np.repeat(plen, length)] = IGNORE
    off = pa.array(offsets)
    columns = [pa.ListArray.from_arrays(off, pa.array(ids)),
               pa.ListArray.from_arrays(off, pa.array(labels)),
               pa.array(length.astype(np.int32)), pa.array(cut, pa.bool_())]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=features_for("sft").arrow_schema)


_RATE: RateLog | None = None


# --- the tokenized split -----------------------------------------------------------------


@dataclass
class ArrowTokens:
    """One tokenized split, memory-mapped: a torch-style dataset of {input_ids, labels}."""

    ds: Any  # datasets.Dataset over the split's Arrow files
    truncated: int

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.ds[int(i)]
        return {"input_ids": row["input_ids"], "labels": row["labels"]}

    def rows(self, idx: list[int]) -> dict[str, list[Any]]:
        """Several examples at once (one Arrow take): {"input_ids": [...], "labels": [...]}."""
        return self.ds.select_columns(["input_ids", "labels"])[idx]

    @property
    def length_array(self) -> Any:
        """Token count per example (numpy int32, zero-copy from the Arrow column)."""
        import numpy as np

        col = self.ds.data.column("length")
        return np.asarray(col.to_numpy(), dtype=np.int32) if len(col) else np.zeros(0, np.int32)

    @property
    def lengths(self) -> list[int]:
        return [int(x) for x in self.length_array.tolist()]

    @property
    def total_tokens(self) -> int:
        return int(self.length_array.sum(dtype="int64"))


def open_split(folder: Path) -> ArrowTokens:
    """The split written by tokenize_to_arrow in `folder` (its meta.json lists the shards)."""
    from datasets import Dataset, concatenate_datasets

    meta = json.loads((folder / "meta.json").read_text())
    parts = [Dataset.from_file(str(folder / name)) for name in meta["shards"]]
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return ArrowTokens(ds, int(meta["truncated"]))


def tokenize_to_arrow(
    kind: str,
    records: Iterable[dict[str, Any]],
    tokenizer: Any,
    dataset: DatasetSpec,
    folder: Path,
    num_proc: int | None = -1,
) -> ArrowTokens:
    """Tokenize `records` into Arrow files under `folder` (created); `num_proc` -1: decided
    by the size (workers_for). The records file is removed once tokenized."""
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    if kind not in BATCHES:
        raise ValueError(f"records of kind {kind!r} are tokenized by their recipe (dpo/ranking)")
    resolve(dataset.template, tokenizer)  # a bad template fails here, not in a worker
    folder.mkdir(parents=True, exist_ok=True)
    n = write_records(records, folder / RECORDS, kind)
    if n == 0:  # e.g. no validation split: `map` would write nothing and keep the records file
        return _empty_split(kind, folder)
    procs = workers_for(n) if num_proc == -1 else num_proc
    disable_progress_bar()  # RateLog reports (tqdm in a terminal, log lines in a pod)
    raw = Dataset.from_file(str(folder / RECORDS))
    global _RATE
    _RATE = None
    with _serial_tokenizer(procs):
        tokens = raw.map(
            _batch,
            batched=True,
            batch_size=BATCH,
            fn_kwargs={"tokenizer": tokenizer, "dataset": dataset, "kind": kind,
                       "total": -(-n // (procs or 1))},
            num_proc=procs,
            remove_columns=record_columns(kind),
            features=features_for(kind),
            cache_file_name=str(folder / "tokens.arrow"),
            new_fingerprint=f"kubetune-{kind}-{n}",  # no hashing of the tokenizer: we key it
            load_from_cache_file=False,
        )  # fmt: skip
    if _RATE is not None:
        _RATE.close()
    shards = sorted({Path(f["filename"]).name for f in tokens.cache_files})
    # counted in Arrow: no Python list of every row's flag (n > 0 here: see _empty_split)
    truncated = int(pc.sum(tokens.data.column("truncated")).as_py() or 0)
    del tokens, raw
    (folder / RECORDS).unlink()
    meta = {"kind": kind, "examples": n, "truncated": truncated, "shards": shards}
    (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    return open_split(folder)


def _empty_split(kind: str, folder: Path) -> ArrowTokens:
    """A split with no examples, with the token columns' schema (what open_split reads)."""
    from datasets.arrow_writer import ArrowWriter

    (folder / RECORDS).unlink(missing_ok=True)
    writer = ArrowWriter(features=features_for(kind), path=str(folder / "tokens.arrow"))
    writer.finalize()
    writer.close()
    meta = {"kind": kind, "examples": 0, "truncated": 0, "shards": ["tokens.arrow"]}
    (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    return open_split(folder)
