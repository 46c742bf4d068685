"""Ranks agreeing on a value before the process group exists, through torchrun's store.

`precision: auto` is resolved before the model loads (it decides the frozen weights'
dtype), long before the Trainer creates the process group. Each rank decides from its own
machine; on a mixed node pool (one node with AMX, one without; a bf16 GPU beside one
without bf16) they can disagree, and ranks whose weights differ in dtype break DDP's first
broadcast (a gloo size mismatch) or, worse, train under different autocast. torchrun's
agent hosts a TCPStore every rank can reach already (MASTER_ADDR:MASTER_PORT, the one
`init_process_group` joins later): each rank writes its value there and reads all of them.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from ..errors import RetryableError
from .runtime import rank, world_size

log = logging.getLogger(__name__)
PREFIX = "kubetune/agree"


def agent_store_available() -> bool:
    """Ranks started by torchrun (every multi-rank kubetune run) share the agent's store."""
    return (
        os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and "MASTER_ADDR" in os.environ
        and "MASTER_PORT" in os.environ
    )


def every_rank(topic: str, value: str, timeout: float) -> list[str] | None:
    """Every rank's `value` for `topic`, by rank (a collective: every rank calls it).

    None when there is no store to meet at (one rank, or not started by torchrun).
    A peer that never answers within `timeout` seconds is RetryableError (exit 75): the
    attempt is retried, as for a peer lost in any other collective.
    """
    if world_size() <= 1 or not agent_store_available():
        return None
    import torch.distributed as dist

    store = dist.TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        world_size=world_size(),
        is_master=False,
        timeout=timedelta(seconds=timeout),
    )
    # The agent's store lives as long as torchrun; a restarted attempt must not read the
    # answers of the one before.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    scoped = dist.PrefixStore(f"{PREFIX}/{topic}/{attempt}/", store)
    scoped.set(str(rank()), value)
    try:
        return [scoped.get(str(r)).decode() for r in range(world_size())]
    except RuntimeError as exc:  # DistStoreError (a key never came) is one
        raise RetryableError(
            f"ranks could not agree on {topic} within {timeout:g}s (a peer did not answer: "
            f"{exc}); the attempt is retried"
        ) from exc


def common_precision(mine: str, timeout: float) -> str:
    """This rank's precision if every rank resolved the same one, else fp32 everywhere
    (what every device can run; bf16 on some ranks only is not an option)."""
    values = every_rank("precision", mine, timeout)
    if values is None or len(set(values)) == 1:
        return mine
    chosen = "fp32"
    if rank() == 0:
        log.warning(
            "precision: auto resolved differently across ranks (%s): every rank trains in "
            "%s; run the job on one kind of node (spec.resources.nodeSelector) or set "
            "spec.training.precision",
            ", ".join(f"rank {r} {v}" for r, v in enumerate(values)),
            chosen,
        )
    return chosen
