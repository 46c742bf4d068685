"""Which malloc a kubetune process runs with, and re-executing it with jemalloc.

One mechanism for both images, and in both glibc's malloc is the default and jemalloc
(KUBETUNE_ALLOCATOR=jemalloc) an opt-in, from measurements:

- The trainer (kubetune_trainer/allocator.py): jemalloc lowers peak RSS 10-17% but costs
  7-37% of the speed (findings, "jemalloc").
- The operator (kubetune_operator/__main__.py, with config.MALLOC_SETTINGS): measured when
  a replica taking over 5000 running jobs peaked at ~510 MiB (kopf's indexes, since replaced
  by informer.py: ~210 MiB), jemalloc gave the start-up's transient back afterwards but not
  the peak, for 3-25% more CPU per job (findings, "jemalloc for the operator").

The allocator must be in place before the process starts, so the process re-executes
itself once with LD_PRELOAD (`reexec`); its children inherit the variables.
Asked for and not installed, jemalloc is refused by name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

ENV = "KUBETUNE_ALLOCATOR"  # system (default) | jemalloc
LIBRARY = "libjemalloc.so.2"
# Set on the re-executed process: it never re-executes again.
REEXEC_MARK = "KUBETUNE_ALLOCATOR_REEXEC"


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
    import ctypes.util  # here: light commands do not pay for it

    found = ctypes.util.find_library("jemalloc")
    return LIBRARY if found and found.startswith("libjemalloc.so") else None


def preload_env(
    env: Mapping[str, str], *, settings: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """`env` with jemalloc preloaded when KUBETUNE_ALLOCATOR=jemalloc asks for it, or None
    when it is not wanted (unset or system) or there already. `settings` (e.g. MALLOC_CONF)
    are added where `env` does not set them already: the user's own values win."""
    choice = (env.get(ENV) or "system").strip().lower()
    if choice == "system":
        return None
    if choice != "jemalloc":
        raise SystemExit(f"{ENV}={choice!r}: use 'system' (the default) or 'jemalloc'")
    lib = library()
    if lib is None:
        raise SystemExit(
            f"{ENV}=jemalloc: {LIBRARY} is not installed here (Debian/Ubuntu: apt-get install "
            f"libjemalloc2; kubetune's images have it); unset {ENV} for the system malloc"
        )
    if lib in env.get("LD_PRELOAD", "").split(":"):
        return None
    preload = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    return {**(settings or {}), **env, "LD_PRELOAD": preload, REEXEC_MARK: "1"}


def reexec(module: str, args: Sequence[str], *, settings: Mapping[str, str] | None = None) -> None:
    """Replace this process by `python -m module *args` with jemalloc preloaded.

    Returns (and the caller goes on as it is) when jemalloc is loaded already or not wanted,
    or this is the re-executed process; asked for and not installed, it stops with
    SystemExit naming the package (preload_env)."""
    if os.environ.get(REEXEC_MARK) or in_use() != "system":
        return
    env = preload_env(os.environ, settings=settings)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", module, *args], env)
    except OSError as exc:  # the command still runs, with the system's malloc
        print(f"{module}: could not preload {LIBRARY} ({exc}); using the system malloc",
              file=sys.stderr)  # fmt: skip
