"""The model cache: converted or built checkpoints, written once and atomically.

A cache entry is a folder renamed into place after it is complete, so a second
process either sees nothing (and builds its own copy in its own temp folder) or a
whole entry; it never reads a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("KUBETUNE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kubetune"
    )
    return Path(root)


def cached_dir(kind: str, key: str, build: Callable[[Path], None]) -> Path:
    """Path of cache entry kind/key, calling build(tmp_dir) once to create it."""
    final = cache_root() / kind / key
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process won the race with a complete entry: use theirs.
            if not (final / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
