"""jemalloc, opt-in, for the processes that train, evaluate and serve.

glibc's malloc keeps freed activation buffers in its heap once its dynamic mmap threshold
has risen (bench/findings.md, "Peak RSS and glibc's mmap threshold"): peak RSS sits well
above what a step holds. jemalloc returns them: measured on this CPU, peak RSS -15 to -17%
on the throughput workload and -10 to -12% for a 1.1B model's LoRA and QLoRA steps. It
costs speed, more the longer the step: ~7% fewer tokens/s at maxSeqLength 512 and ~37% at
2048, where every step faults its freed pages back in (findings, "jemalloc"; its decay and
oversize settings do not buy the speed back without giving up the memory). So glibc's stays
the default, and KUBETUNE_ALLOCATOR=jemalloc is for a job short of memory, not of time.

The allocator must be in place before the process starts, so `kubetune` re-executes itself
once with LD_PRELOAD for the heavy commands (`entry`); child processes (torchrun's workers,
the local queue's jobs) inherit the variable. Without libjemalloc.so.2 (Debian:
libjemalloc2) the setting is refused by name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

ENV = "KUBETUNE_ALLOCATOR"  # system (default) | jemalloc
LIBRARY = "libjemalloc.so.2"
# Commands whose process trains, evaluates or serves a model: worth the re-exec (~0.1 s).
HEAVY = frozenset({"run", "train", "launch", "worker", "eval", "compare", "serve", "export"})
_REEXEC = "KUBETUNE_ALLOCATOR_REEXEC"  # set on the re-executed process: never loop


def in_use(maps_path: str = "/proc/self/maps") -> str:
    """The allocator this process runs with: jemalloc, tcmalloc or system."""
    try:
        with open(maps_path, encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return "system"
    for name in ("jemalloc", "tcmalloc"):
        if f"lib{name}" in maps:
            return name
    return "system"


def library() -> str | None:
    """jemalloc's soname when the dynamic loader can find it, else None."""
    import ctypes.util  # here: `kubetune validate` does not pay for it

    found = ctypes.util.find_library("jemalloc")
    return LIBRARY if found and found.startswith("libjemalloc.so") else None


def preload_env(env: Mapping[str, str]) -> dict[str, str] | None:
    """`env` with jemalloc preloaded, or None when it is not wanted or there already."""
    choice = (env.get(ENV) or "system").strip().lower()
    if choice == "system":
        return None
    if choice != "jemalloc":
        raise SystemExit(f"{ENV}={choice!r}: use 'system' (the default) or 'jemalloc'")
    lib = library()
    if lib is None:
        raise SystemExit(
            f"{ENV}=jemalloc: {LIBRARY} is not installed here (Debian/Ubuntu: apt-get install "
            f"libjemalloc2; the trainer image has it); unset {ENV} to use the system malloc"
        )
    if lib in env.get("LD_PRELOAD", "").split(":"):
        return None
    preload = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    return {**env, "LD_PRELOAD": preload, _REEXEC: "1"}


def reexec(argv: Sequence[str]) -> None:
    """Replace this process by itself with jemalloc preloaded, for a heavy command.

    Returns (and the command runs as it is) when it is not heavy, jemalloc is loaded
    already or not wanted, or this is the re-executed process; asked for and not installed,
    it stops with SystemExit naming the package (preload_env)."""
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
    if command not in HEAVY or os.environ.get(_REEXEC) or in_use() != "system":
        return
    env = preload_env(os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # As a module, whether this started as the `kubetune` script or `python -m ...cli`.
    try:
        os.execve(sys.executable, [sys.executable, "-m", "kubetune_trainer.cli", *argv[1:]], env)
    except OSError as exc:  # the command still runs, with the system's malloc
        print(f"kubetune: could not preload {LIBRARY} ({exc}); using the system malloc",
              file=sys.stderr)  # fmt: skip
