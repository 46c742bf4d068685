"""What a training rank needs to know about the job it is part of.

Ranks read torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK), so a plain
`kubetune train` is rank 0 of 1. Nothing here imports torch at module level:
`kubetune launch` and the spec checks must stay cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

from kubetune_api.constants import ExitCode
from kubetune_api.spec import FineTuneJob, FineTuneJobSpec

from ..errors import RetryableError, TrainerError

log = logging.getLogger(__name__)

# Substrings of the errors gloo/NCCL/the c10d store raise when a peer is gone or silent.
_PEER_LOSS_MARKERS = (
    "connection closed by peer",
    "connection reset by peer",
    "connection refused",
    "broken pipe",
    "timed out",
    "timeout",
    "socket closed",
    "nccl communicator was aborted",
    "nccl error",
    "process group watchdog",
    "recv failed",
    "send failed",
)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0 alone writes checkpoints, adapters, reports and the registry record."""
    return rank() == 0


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (a collective: call it everywhere).

    Ranks must take stop/save decisions together: one rank stopping while another steps
    on would pair mismatched collectives.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def ddp_timeout(job: FineTuneJob | FineTuneJobSpec) -> int:
    """Seconds a collective may wait for a peer (TrainingArguments.ddp_timeout).

    The same budget as the rendezvous: past it a silent peer is lost, and the survivors
    fail (RETRYABLE) instead of hanging until the Job's deadline.
    """
    spec = job.spec if isinstance(job, FineTuneJob) else job
    return spec.distributed.rendezvous_timeout_seconds


def is_peer_loss(exc: BaseException) -> bool:
    """True if `exc` (or its cause) is a collective or store failing because of a peer."""
    import torch.distributed as dist

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, dist.DistNetworkError | dist.DistStoreError):
            return True
        if isinstance(current, RuntimeError | ConnectionError | TimeoutError):
            text = str(current).lower()
            if any(m in text for m in _PEER_LOSS_MARKERS):
                return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def peer_loss_guard() -> Iterator[None]:
    """Turn a lost peer into RetryableError (exit 75) in a multi-rank run.

    A single process has no peers, so its errors pass through untouched; a TrainerError
    already knows its exit code.
    """
    try:
        yield
    except TrainerError:
        raise
    except Exception as exc:
        if is_distributed() and is_peer_loss(exc):
            raise RetryableError(
                f"rank {rank()} of {world_size()} lost a peer: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        raise


def start_parent_watchdog(interval: float = 1.0) -> threading.Thread | None:
    """Exit RETRYABLE if torchrun's agent dies (this rank would be orphaned).

    In a pod the container dies with its agent; on one machine (kubetune run, tests) an
    orphaned rank would keep training and holding the rendezvous port. Only started
    under torchrun (TORCHELASTIC_RUN_ID is set by the agent).
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                log.error("torchrun agent (pid %d) is gone; rank %d exits", parent, rank())
                os._exit(ExitCode.RETRYABLE)

    thread = threading.Thread(target=watch, name="kubetune-parent-watchdog", daemon=True)
    thread.start()
    return thread


def barrier() -> None:
    """Wait for every rank (no-op when not distributed or not initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> bool:
    """Destroy the process group (without it 2-process gloo runs sometimes abort at exit).

    Returns whether there was one.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    with contextlib.suppress(Exception):
        dist.destroy_process_group()
    return True


def exit_rank(code: int) -> NoReturn:
    """Leave the process with `code` once everything this rank writes is committed.

    A multi-process rank skips interpreter teardown: ranks (ZeRO-2 training, a ZeRO-3
    gather) that had finished their work were seen to die there with SIGABRT ("terminate
    called without an active exception", a native thread still joinable), which torchrun
    reports as a failure and the operator would retry. So does a single process that had
    a process group (DeepSpeed makes one), and a preempted process; any other process
    exits normally.
    """
    from kubetune_trainer.storage.committer import wait_for_commits

    wait_for_commits()  # os._exit below would not wait for the checkpoint being uploaded
    had_group = shutdown()
    # Preempted: the grace period is short and what was to be kept is committed; the
    # teardown of torch/transformers alone takes 2-9 s on a busy 2-core node.
    if had_group or world_size() > 1 or code == ExitCode.PREEMPTED:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


@contextlib.contextmanager
def rank_session() -> Iterator[None]:
    """Wrap a rank's whole training run: watchdog, peer-loss mapping, clean shutdown."""
    start_parent_watchdog()
    try:
        with peer_loss_guard():
            yield
    finally:
        shutdown()
