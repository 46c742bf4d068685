"""Quantize a base once, then load the 4-/8-bit copy: the quantized-base cache.

Quantizing inside from_pretrained reads the whole 16/32-bit checkpoint through memory maps,
and on a CPU those pages stay resident until loading ends: a 4-bit 1.1B model peaked at
~6 GB while loading, for 0.6 GB of weights. So a 4-bit base is first quantized tensor by
tensor straight into the cache (stream_quant; at most one full-precision tensor in memory),
then read like any cached copy. Where that cannot reproduce from_pretrained exactly (8-bit,
other tasks, .bin checkpoints), the model is quantized in memory and saved afterwards.
Later loads of the same base with the same quantization (a retry, a resume after
preemption, the next job on that base) read the cached copy.

Only local folders are cached (builtin models, converted GGUF, fetched s3:// prefixes,
a user's path); the key covers the checkpoint's files (name, size, mtime), the
quantization config, the dtype, the task and the device type.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import cache_root, cached_dir

log = logging.getLogger(__name__)
KIND = "quantized"


def cache_key(location: str, qconf: Any, extra: dict[str, Any]) -> str | None:
    """A key for this base + quantization, or None when the base is not a local folder."""
    folder = Path(location)
    if not folder.is_dir():
        return None
    files = [
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
        if p.is_file() and (p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    ]
    doc = {"base": str(folder.resolve()), "files": files, "quant": qconf.to_dict(), **extra}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_path(key: str) -> Path | None:
    entry = cache_root() / KIND / key
    return entry if (entry / ".complete").exists() else None


def load_or_quantize(
    key: str | None,
    load: Callable[[str, bool], Any],
    location: str,
    say: Callable[[str], None] = log.info,
    stream: Callable[[Path], bool] | None = None,
) -> Any:
    """load(path, cached): the cached copy when there is one, else quantize and cache it.

    stream(tmp_dir): writes the quantized copy into tmp_dir without loading the model
    (False when it cannot for this base); the in-memory path is the fallback.
    """
    if key is None:
        return load(location, False)
    hit = cached_path(key)
    if hit is not None:
        say(f"quantized base: reading the cached copy {hit}")
        return load(str(hit), True)
    if stream is not None:
        entry = _streamed(key, stream)
        if entry is not None:
            say(f"quantized base: saved to {entry} layer by layer; reading it")
            return load(str(entry), True)
    model = load(location, False)

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)

    try:
        entry = cached_dir(KIND, key, save)
    except (OSError, RuntimeError, ValueError) as exc:  # a full disk must not stop training
        log.warning("quantized base not cached (%s); the next load quantizes again", exc)
        return model
    say(f"quantized base: saved to {entry}; the next load of this base reads it")
    return model


class _Unsupported(Exception):
    pass


def _streamed(key: str, stream: Callable[[Path], bool]) -> Path | None:
    """The cache entry stream() wrote, or None (unsupported base, or it failed)."""

    def build(tmp: Path) -> None:
        if not stream(tmp):
            raise _Unsupported

    try:
        return cached_dir(KIND, key, build)
    except _Unsupported:
        return None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:  # e.g. a full disk
        log.warning("streaming quantization failed (%s); quantizing in memory instead", exc)
        return None
