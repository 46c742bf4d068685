"""Least-recently-used eviction for the host's data caches ($KUBETUNE_CACHE/prepared, /data).

Every new data version adds an entry as large as the data (prepared JSONL, Arrow tokens),
so a long-lived cache volume would fill up. An entry's folder mtime is its last use (set
when it is made or reused: `touch`); after a new entry is installed the oldest ones beyond
KUBETUNE_DATA_CACHE_KEEP (default 4) are removed, except any used in the last hour: another
run on this host may be reading it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger("kubetune_trainer.data")
KEEP = int(os.environ.get("KUBETUNE_DATA_CACHE_KEEP", "4"))
IDLE_SECONDS = 3600.0


def touch(folder: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache: nothing is evicted there either
        os.utime(folder)


def evict(parent: Path, keep: int = KEEP, idle: float = IDLE_SECONDS) -> list[Path]:
    """Remove entries of `parent` beyond the `keep` most recently used that have been idle
    for `idle` seconds; hidden folders (entries being built) are never touched."""
    try:
        entries = [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    now, gone = time.time(), []
    for old in entries[max(keep, 0) :]:
        if now - old.stat().st_mtime < idle:
            continue
        shutil.rmtree(old, ignore_errors=True)
        gone.append(old)
    if gone:
        log.info("data cache: removed %d least recently used entries of %s", len(gone), parent)
    return gone
