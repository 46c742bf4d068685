"""Give back the pages of a memory-mapped checkpoint that no tensor uses any more.

On a CPU, from_pretrained leaves tensors as views into each safetensors shard, mapped
privately. A 4-bit base read from the quantized cache keeps every shard mapped (its packed
weights are such views), so the pages of tensors that were read to be copied or cast while
loading (the fp32 head, cast to bf16 by frozen16; what quantizing in memory read) stayed in
RSS for the whole run though nothing reads them again: 250 MiB of a 1.1B model's 2 GB peak.
The loader calls this after loading a quantized base and again after attaching LoRA.

release_unused() tells the kernel (madvise MADV_DONTNEED) to drop the pages of those
mappings that lie outside every tensor the model still holds. For a private file mapping
that only discards pages equal to the file (they are read back from the page cache if ever
touched), unless one was written: a written page becomes the process's own ("Anonymous" in
/proc/self/smaps) and DONTNEED would lose the write, so a mapping with any such page is left
alone. Linux only; elsewhere, or if madvise fails, nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
PAGE = mmap.PAGESIZE
SMAPS = "/proc/self/smaps"
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    path: str
    anonymous_kb: int  # pages written since mapping (copy-on-write): not the file's any more
    rss_kb: int


def mappings() -> list[Mapping]:
    """This process's mappings of safetensors files."""
    out: list[Mapping] = []
    current: dict[str, Any] | None = None
    with open(SMAPS) as f:
        for line in f:
            head = line.split(maxsplit=5)
            if not head:
                continue
            if "-" in head[0] and not head[0].endswith(":"):  # a new mapping's header
                if current:
                    out.append(Mapping(**current))
                path = head[5].strip() if len(head) > 5 else ""
                start, end = (int(x, 16) for x in head[0].split("-"))
                current = None
                if path.endswith(SUFFIX):
                    current = {"start": start, "end": end, "path": path}
                    current |= {"anonymous_kb": 0, "rss_kb": 0}
            elif current is not None and head[0] in ("Anonymous:", "Rss:"):
                key = "anonymous_kb" if head[0] == "Anonymous:" else "rss_kb"
                current[key] = int(head[1])
    if current:
        out.append(Mapping(**current))
    return out


def _tensors(model: Any) -> Iterator[torch.Tensor]:
    """Every tensor the model holds: parameters, buffers and bitsandbytes' quantization
    state (absmax, codebooks, the nested state of double quantization)."""
    for t in [*model.parameters(), *model.buffers()]:
        yield t
        state = getattr(t, "quant_state", None)
        for part in (state, getattr(state, "state2", None)):
            for v in vars(part).values() if part is not None else ():
                if isinstance(v, torch.Tensor):
                    yield v


def live_ranges(tensors: Iterable[torch.Tensor]) -> list[tuple[int, int]]:
    """[start, end) byte ranges of the tensors' whole storages, merged and sorted."""
    spans = sorted(
        (s.data_ptr(), s.data_ptr() + s.nbytes())
        for s in (t.untyped_storage() for t in tensors if t.device.type == "cpu")
        if s.nbytes()
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps(start: int, end: int, live: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Whole pages of [start, end) that no live range touches."""
    out = []
    cursor = start
    for a, b in live:
        if b <= cursor or a >= end:
            continue
        out.append((cursor, a))
        cursor = max(cursor, b)
    out.append((cursor, end))
    aligned = [(-(-a // PAGE) * PAGE, b // PAGE * PAGE) for a, b in out]
    return [(a, b) for a, b in aligned if b > a]


def release_unused(model: Any) -> int:
    """Drop the resident pages of the checkpoint mappings `model`'s tensors live in that lie
    outside every one of them; returns the bytes of address range released. Mappings none
    of its tensors lives in are left alone (another model's, loaded from the same files)."""
    if sys.platform != "linux":
        return 0
    try:
        maps = mappings()
    except OSError:
        return 0
    live = live_ranges(_tensors(model))
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for m in maps:
        holds = any(a < m.end and b > m.start for a, b in live)
        if not holds or m.anonymous_kb:
            continue  # not this model's, or a page was written: keep it all
        for a, b in gaps(m.start, m.end, live):
            if madvise(a, b - a, MADV_DONTNEED) == 0:
                released += b - a
    if released:
        log.info("checkpoint pages no tensor uses released: %d MiB", released >> 20)
    return released
