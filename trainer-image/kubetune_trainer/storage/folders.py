"""A folder committed to any Store: files first (in parallel), MANIFEST.json last.

The protocol checkpoints and the tokenized-data cache share: an entry is *committed* when
its manifest exists and every file it lists exists with the listed size; fetching checks
every sha256 while downloading. Callers own the key layout and what a torn entry means.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubetune_trainer.errors import StorageWriteError

from .base import IntegrityError, Store, join_key
from .manifest import MANIFEST, dump_manifest, folder_files, new_manifest, parse_manifest
from .paths import check_names, safe_join

log = logging.getLogger(__name__)


def commit_folder(
    store: Store, local: Path, base: str, step: int | None = None, parallel: int = 4
) -> dict[str, Any]:
    """Upload every file of `local` under `base`, then the manifest; returns the manifest.

    The store hashes what it sends (each file read once). If this raises, nothing was
    committed; a full disk (StorageWriteError) also removes the files already uploaded.
    """
    paths = folder_files(local)
    if not paths:
        raise ValueError(f"folder {local} is empty")
    # Largest first: a failure in the long upload comes before the cheap ones.
    order = sorted(paths.items(), key=lambda kv: -kv[1].stat().st_size)

    def put(item: tuple[str, Path]) -> tuple[str, dict[str, Any]]:
        name, path = item
        size = path.stat().st_size
        return name, {"size": size, "sha256": store.put_file(path, join_key(base, name))}

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(order)))) as pool:
            files = dict(pool.map(put, order))
    except StorageWriteError:
        _drop(store, base)  # disk full: give the space back at once, leave no torn files
        raise
    # Only now, every part written and hashed: the manifest commits the folder.
    manifest = new_manifest(dict(sorted(files.items())), step)
    store.put_bytes(join_key(base, MANIFEST), dump_manifest(manifest))
    return manifest


def _drop(store: Store, base: str) -> None:
    try:
        store.delete_prefix(base + "/")
    except Exception as exc:  # the original failure matters more; readers skip torn ones
        log.warning("could not remove the torn folder %s: %s", store.uri(base), exc)


def check_folder(
    store: Store, base: str, sizes: dict[str, int]
) -> tuple[str | None, dict[str, Any]]:
    """(why `base` is not committed, or None; its manifest). `sizes`: the sizes of the
    files under `base` by relative name (one listing serves many folders)."""
    if MANIFEST not in sizes:
        return f"no {MANIFEST} (upload interrupted before the commit)", {}
    try:
        manifest = parse_manifest(store.get_bytes(join_key(base, MANIFEST)), store.uri(base))
    except (ValueError, FileNotFoundError) as e:
        return str(e), {}
    for name, meta in sorted(manifest["files"].items()):
        if name not in sizes:
            return f"{name} listed in the manifest is missing", {}
        if sizes[name] != meta["size"]:
            return f"{name} is {sizes[name]} bytes, the manifest says {meta['size']}", {}
    return None, manifest


def fetch_folder(store: Store, base: str, manifest: dict[str, Any], dest: Path) -> list[str]:
    """Download the committed folder into `dest` (created), verifying every sha256 while
    downloading; returns the damaged files (never written into `dest`).

    A manifest naming a file outside the folder ('..', absolute, backslash) is tampering,
    not damage: UnsafePathError, before anything is written.
    """
    where = f"file name in {store.uri(base)}/{MANIFEST}"
    check_names(manifest["files"], where)
    dest.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, meta in manifest["files"].items():
        try:
            store.get_file(join_key(base, name), safe_join(dest, name, what=where), meta["sha256"])
        except IntegrityError:
            problems.append(f"{name}: sha256 differs from the manifest")
    (dest / MANIFEST).write_bytes(dump_manifest(manifest))
    return problems
