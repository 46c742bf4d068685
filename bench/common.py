"""Shared by every benchmark: paths, machine facts, load average, stats, child processes.

Benchmarks are not tests: nothing here asserts on time. Each benchmark returns a result
dict (figures, targets, notes) that `report.py` turns into BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PY = sys.executable
# The operator's KMock emulator lives with its tests; the benchmark reuses it as is.
OPERATOR_TESTS = ROOT / "tests" / "operator"
# tests.support: the API emulator, the pod player, moto_server and free_port the tests use.
sys.path.insert(0, str(ROOT))
from tests.support.net import free_port  # noqa: E402,F401 - re-exported to the benchmarks

# Never reach a model hub, whoever starts us (make bench exports these too).
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def git_state() -> dict[str, Any]:
    """The commit a result measured and whether the tree had uncommitted changes (a dirty
    figure measured code that no commit holds). None when git cannot tell."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                 text=True, check=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    # Results and the report a batch writes as it goes are not code changes.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":!bench/results", ":!BENCHMARKS.md")  # fmt: skip
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine() -> dict[str, Any]:
    """lscpu model, cores, RAM and library versions, for the report header."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else model
        flags = re.search(r"Flags:\s*(.+)", out)
        isa = [
            f
            for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
            if flags and f in flags.group(1).split()
        ]
    except (OSError, subprocess.CalledProcessError):
        isa = []
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "kopf", "moto", "boto3"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "isa": isa,
        "python": platform.python_version(),
        "versions": versions,
    }


def stats(values: Sequence[float]) -> dict[str, float]:
    vals = [float(v) for v in values]
    return {
        "min": min(vals),
        "median": statistics.median(vals),
        "max": max(vals),
        "n": len(vals),
    }


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM of its own address space.

    Not ru_maxrss: Linux carries that across execve, so a worker started by a parent that
    once held 1.7 GB (a model conversion) reported at least 1.7 GB whatever it did.
    """
    return hwm_bytes(os.getpid())


def rss_bytes(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def hwm_bytes(pid: int) -> int:
    """Peak RSS (VmHWM) of a running process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Child:
    """A worker run in a fresh interpreter: `python bench/<module>.py --worker ...`.

    Fresh processes keep RSS and allocator state of one configuration out of the next;
    the worker prints one JSON line prefixed RESULT: on stdout.
    """

    module: str
    args: list[str]
    timeout: float = 1800
    # kubetune's own path: the worker runs with the malloc `kubetune` gives its heavy
    # commands (glibc's, or jemalloc with KUBETUNE_ALLOCATOR=jemalloc in the environment:
    # kubetune_trainer/allocator.py); others as their users start them (glibc's).
    kubetune: bool = False

    def run(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        cmd = [PY, str(BENCH / f"{self.module}.py"), "--worker", *self.args]
        full = {**os.environ, **(env or {})}
        if self.kubetune:
            from kubetune_trainer import allocator

            full = allocator.preload_env(full) or full
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            env=full,
            cwd=ROOT,
        )
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT:")]
        if proc.returncode != 0 or not lines:
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-30:])
            raise RuntimeError(f"{' '.join(cmd[1:])} failed ({proc.returncode}):\n{tail}")
        out = json.loads(lines[-1][len("RESULT:") :])
        out.setdefault("wall_seconds", round(time.monotonic() - t0, 2))
        return out


def emit(result: dict[str, Any]) -> None:
    """A worker's answer to its parent (see Child)."""
    print("RESULT:" + json.dumps(result), flush=True)


def stamp(result: dict[str, Any], state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mark a result with the code it measured (`state`: git_state() taken when it started),
    the machine and the time it finished."""
    result.update(state if state is not None else git_state())
    result["machine"] = machine()  # hosts differ: AMX or not
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return result


def save_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def load_results() -> dict[str, dict[str, Any]]:
    if not RESULTS.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", flush=True)
