"""Bring every node's share of a checkpoint to global rank 0 before it commits.

Each node's ranks write into that node's own staging folder: rank 0's node holds the
model, optimizer and its ranks' RNG/ZeRO files, but the other nodes' `rng_state_<r>.pth`
and `zero_pp_rank_<r>_*` shards exist only on their nodes. Without them a resumed run
would load its ZeRO optimizer state from nothing. The files are small for LoRA (adapter-
sized optimizer shards, RNG states), so they travel over the process group itself:
no second storage path, no extra credentials on other nodes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _listing(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def multi_node() -> bool:
    """More than one node in the job (torchrun sets LOCAL_WORLD_SIZE per node)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world))) < world


def collect_node_files(folder: str | Path) -> list[str]:
    """Copy into rank 0's `folder` the files only other nodes have; returns their names.

    A collective: every rank calls it (a no-op on one node). Each node's local rank 0
    sends what rank 0's listing lacks; identical paths are never sent twice.
    """
    if not multi_node():
        return []
    import torch.distributed as dist

    folder = Path(folder)
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    have = [_listing(folder) if rank == 0 else None]
    dist.broadcast_object_list(have, src=0)
    payload: dict[str, bytes] = {}
    if local == 0 and rank != 0:
        known = have[0] or {}
        payload = {name: (folder / name).read_bytes()
                   for name in _listing(folder) if name not in known}  # fmt: skip
    received: list[dict[str, bytes] | None] = [None] * dist.get_world_size() if rank == 0 else []
    dist.gather_object(payload, received if rank == 0 else None, dst=0)
    written: list[str] = []
    if rank == 0:
        for part in received:
            for name, data in (part or {}).items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                written.append(name)
        if written:
            log.info("checkpoint: %d file(s) from other nodes: %s", len(written),
                     ", ".join(sorted(written)))  # fmt: skip
    return sorted(written)
