"""jemalloc, opt-in, for the processes that train, evaluate and serve.

glibc's malloc keeps freed activation buffers in its heap once its dynamic mmap threshold
has risen (bench/findings.md, "Peak RSS and glibc's mmap threshold"): peak RSS sits well
above what a step holds. jemalloc returns them: measured on this CPU, peak RSS -15 to -17%
on the throughput workload and -10 to -12% for a 1.1B model's LoRA and QLoRA steps. It
costs speed, more the longer the step: ~7% fewer tokens/s at maxSeqLength 512 and ~37% at
2048, where every step faults its freed pages back in (findings, "jemalloc"; its decay and
oversize settings do not buy the speed back without giving up the memory). So glibc's stays
the default, and KUBETUNE_ALLOCATOR=jemalloc is for a job short of memory, not of time.

`kubetune` re-executes itself once with LD_PRELOAD for the heavy commands (`entry`), through
kubetune_api/allocator.py (shared with the operator, whose default is jemalloc); child
processes (torchrun's workers, the local queue's jobs) inherit the variable.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetune_api.allocator import ENV, LIBRARY, in_use, library, preload_env
from kubetune_api.allocator import reexec as _reexec

__all__ = ["ENV", "HEAVY", "LIBRARY", "in_use", "library", "preload_env", "reexec"]

# Commands whose process trains, evaluates or serves a model: worth the re-exec (~0.1 s).
HEAVY = frozenset({"run", "train", "launch", "worker", "eval", "compare", "serve", "export"})


def reexec(argv: Sequence[str]) -> None:
    """Re-execute `kubetune` with jemalloc preloaded for a heavy command when it is asked
    for (KUBETUNE_ALLOCATOR=jemalloc); otherwise return and let the command run as it is.
    As a module, whether this started as the `kubetune` script or `python -m ...cli`."""
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    if command in HEAVY:
        _reexec("kubetune_trainer.cli", argv[1:])
