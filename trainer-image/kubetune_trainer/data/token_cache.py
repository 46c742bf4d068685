"""The tokenized dataset, cached: built once per run (not per rank, retry or resume).

Key: sha256 over the prepared data's fingerprint, the tokenizer (its full definition,
chat template and special tokens), the record kind and the dataset fields that change
tokens or packing (template, systemPrompt, maxSeqLength, completionOnlyLoss, the resolved
packing). Entry: `train/` and `validation/` (Arrow shards, meta.json, the packing plan)
and MANIFEST.json (size and sha256 of every file), written last.

Where: the run's store under `data-cache/<key>/` (local folder or S3, committed like a
checkpoint: files first, manifest last), and a local copy in `$KUBETUNE_CACHE/data/<key>`
that is memory-mapped. An entry whose manifest is missing or whose files do not match it
(sha256 when fetched from the store; presence and size for the local copy) is never
used: it is rebuilt (and re-committed).

Ranks: rank 0 builds (or fetches) and commits; the other ranks wait for the commit and
fetch it (or find rank 0's local copy on a shared host). A retry or a resume of the run
finds the committed entry and does not tokenize.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_api.spec_data import DatasetSpec
from kubetune_trainer.storage.base import StorageError, Store, join_key
from kubetune_trainer.storage.folders import check_folder, commit_folder, fetch_folder
from kubetune_trainer.storage.local import atomic_write_bytes
from kubetune_trainer.storage.manifest import MANIFEST, dump_manifest, verify_dir, write_manifest

from .arrow_tokens import ArrowTokens, open_split, tokenize_to_arrow
from .evict import evict, touch
from .interrupt import preemptible
from .packed import PackedRows, WrappedRows, save_plan

log = logging.getLogger("kubetune_trainer.data")
PREFIX = "data-cache"
VERSION = 1  # bump when the stored layout or a tokenization rule changes
WAIT_SECONDS = float(os.environ.get("KUBETUNE_DATA_WAIT_SECONDS", "3600"))

# How many times this process tokenized a dataset (tests assert on it; no timing).
TOKENIZED = {"count": 0}


def tokenizer_identity(tok: Any) -> str:
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary and merges as the tokenizer exposes them
        h.update(json.dumps(tok.get_vocab(), sort_keys=True).encode())
    extra = {
        "chat_template": getattr(tok, "chat_template", None),
        "special": {k: str(v) for k, v in sorted(tok.special_tokens_map.items())},
        "eos": tok.eos_token_id,
        "bos": getattr(tok, "bos_token_id", None),
        "truncation_side": getattr(tok, "truncation_side", "right"),
    }
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(kind: str, fingerprint: str, tok: Any, ds: DatasetSpec, packing: str) -> str:
    fields = {
        "version": VERSION,
        "kind": kind,
        "data": fingerprint,
        "tokenizer": tokenizer_identity(tok),
        "template": ds.template,
        "system_prompt": ds.system_prompt,
        "max_seq_length": ds.max_seq_length,
        "completion_only_loss": ds.completion_only_loss,
        "packing": packing,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _data_identity(prepared: Any) -> str:
    """The records' fingerprint. Records prepare() handed over in memory are hashed again
    (~1 s per 100k): a caller-made PreparedDataset (tests, notebooks) may carry any
    fingerprint, and a cache entry must never be found for other records. Records kept
    on disk carry the fingerprint prepare_to_files computed while writing them."""
    from .fingerprint import fingerprint
    from .streamed import JsonlRecords

    if isinstance(prepared.train, JsonlRecords):
        return str(prepared.fingerprint)
    splits = [("train", prepared.train), ("validation", prepared.validation)]
    return fingerprint(prepared.kind, prepared.format, splits)


@dataclass
class Tokenized:
    train: ArrowTokens
    validation: ArrowTokens
    train_rows: Any  # what the Trainer iterates: packed rows or the examples themselves
    folder: Path
    key: str
    built: bool  # False: reused from the cache (nothing was tokenized)


def _local_dir(key: str) -> Path:
    from kubetune_trainer.modeling.cache import cache_root

    return cache_root() / "data" / key


def _local_ok(folder: Path) -> bool:
    """The local entry is complete: every file listed, at its size. Not re-hashed on each
    start (GBs for a large set): the bytes were hashed when built or fetched, and an entry
    appears only by an atomic rename of a complete folder (as storage/fetch.py trusts its
    local copies)."""
    if not (folder / MANIFEST).is_file():
        return False
    problems = verify_dir(folder, hashes=False)
    if problems:
        log.warning("data cache %s ignored (rebuilt): %s", folder, "; ".join(problems[:3]))
    return not problems


def _committed(store: Store, key: str) -> dict[str, Any] | None:
    """The entry's manifest when it is committed (storage/folders.py: manifest there, every
    file at its size); a damaged or torn entry is logged and rebuilt."""
    base = join_key(PREFIX, key)
    try:
        sizes = {k[len(base) + 1 :]: n for k, n in store.sizes(base + "/").items()}
        if MANIFEST not in sizes:
            return None  # never committed (or still being committed by rank 0)
        reason, manifest = check_folder(store, base, sizes)
    except StorageError as exc:
        reason, manifest = str(exc), {}
    if reason:
        log.warning("data cache %s ignored (rebuilt): %s", store.uri(base), reason)
        return None
    return manifest


def _fetch(store: Store, key: str, manifest: dict[str, Any], dest: Path) -> bool:
    base = join_key(PREFIX, key)
    problems = fetch_folder(store, base, manifest, dest)
    if problems:
        log.warning("data cache %s ignored (rebuilt): %s", store.uri(base), "; ".join(problems))
    return not problems


def _commit(store: Store, key: str, folder: Path) -> dict[str, Any]:
    """Commit the local entry `folder` (files, then the manifest); returns the manifest."""
    base = join_key(PREFIX, key)
    store.delete_prefix(base + "/")  # a torn or damaged earlier upload: start clean
    return commit_folder(store, folder, base)


def _install(tmp: Path, final: Path) -> None:
    """Move a complete entry into place; another rank may have put one there first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not _local_ok(final):
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not _local_ok(final):
            raise
    evict(final.parent)


def _build(tmp: Path, kind: str, prepared: Any, tok: Any, ds: DatasetSpec, packing: str) -> None:
    for split in ("train", "validation"):
        tokens = tokenize_to_arrow(kind, getattr(prepared, split), tok, ds, tmp / split)
        if split == "train" and packing == "position_ids":
            save_plan(tmp / split, tokens.length_array, ds.max_seq_length)
        del tokens


def tokenized_splits(
    prepared: Any,
    tok: Any,
    ds: DatasetSpec,
    packing: str,
    store: Store | None = None,
    say: Callable[[str], None] | None = None,
) -> Tokenized:
    """Both splits tokenized (from the cache when an intact entry exists), and the rows the
    Trainer reads for `packing` (none | position_ids | wrapped)."""
    say = say or log.info
    rank = int(os.environ.get("RANK", "0"))
    key = cache_key(prepared.kind, _data_identity(prepared), tok, ds, packing)
    final = _local_dir(key)
    where = store.uri(join_key(PREFIX, key)) if store is not None else str(final)
    built = False
    with preemptible("tokenization"):
        if not _local_ok(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
            try:
                built = _obtain(
                    store,
                    key,
                    rank,
                    tmp,
                    final,
                    where,
                    say,
                    lambda: _build(tmp, prepared.kind, prepared, tok, ds, packing),
                )
            finally:  # fmt: skip
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            touch(final)  # its last use, for eviction
            if store is not None and rank == 0 and _committed(store, key) is None:
                # Other nodes and later pods look in the store: give them this copy.
                _commit(store, key, final)
            say(f"data: tokenized dataset reused from {final} (no tokenization)")
    train, validation = open_split(final / "train"), open_split(final / "validation")
    rows: Any = train
    if packing == "position_ids":
        rows = PackedRows(train, final / "train", ds.max_seq_length)
    elif packing == "wrapped":
        rows = WrappedRows(train, ds.max_seq_length)
    return Tokenized(train, validation, rows, final, key, built)


def _obtain(
    store: Store | None,
    key: str,
    rank: int,
    tmp: Path,
    final: Path,
    where: str,
    say: Callable[[str], None],
    build: Callable[[], None],
) -> bool:
    """Fill `final` from the store's committed entry, or build (and commit) it. True: built."""
    deadline = time.monotonic() + WAIT_SECONDS
    waited = False
    while store is not None:
        manifest = _committed(store, key)
        if manifest is not None and _fetch(store, key, manifest, tmp):
            _install(tmp, final)
            say(f"data: tokenized dataset fetched from {where} (no tokenization)")
            return False
        if rank == 0 or manifest is not None:
            break  # rank 0 builds; a damaged entry is rebuilt by whoever found it
        if _local_ok(final):  # rank 0 of this host installed it meanwhile
            return False
        if not waited:
            say(f"data: rank {rank} waits for rank 0 to commit the tokenized dataset {where}")
            waited = True
        if time.monotonic() > deadline:
            raise TimeoutError(  # retryable: the next attempt waits again (or builds)
                f"rank {rank}: rank 0 did not commit the tokenized dataset {where} within "
                f"{WAIT_SECONDS:.0f}s (KUBETUNE_DATA_WAIT_SECONDS)"
            )
        time.sleep(1.0)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.monotonic()
    say("data: tokenizing (batched, Arrow, cached for retries and other ranks)...")
    build()
    TOKENIZED["count"] += 1
    if store is not None and rank == 0:  # rank 0 alone writes to the store
        # The upload hashes each file once; its manifest is the local entry's too.
        atomic_write_bytes(tmp / MANIFEST, dump_manifest(_commit(store, key, tmp)))
    else:
        write_manifest(tmp)
    _install(tmp, final)
    kept = where if store is not None and rank == 0 else str(final)
    say(f"data: tokenized in {time.monotonic() - t0:.1f}s, committed to {kept}")
    return True
