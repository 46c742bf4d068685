"""Where the operator's memory per job goes: N FineTuneJobs brought to Running (as in
bench/operator_lifecycle.py), one look inside the operator before the burst and one with
every job running; the growth by object type, divided by N.

    python bench/operator_memory.py [N] [--restart]   # default 500; prints, saves nothing

--restart: then a new operator process starts with every job running (as after a restart or
a failover) and is looked inside too, once it has looked at every job.

A probe for findings.md, not a benchmark in run_all. The census (objects the garbage
collector tracks, by type, shallow sizes) costs nothing until it is taken, where tracemalloc
slowed the operator so much that a 300-job run did not finish in 20 min. It does not count
strings, numbers or the allocator's overhead, which RSS includes.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

from common import rss_bytes, say
from lifecycle_pods import NS, Kubelet
from operator_lifecycle import (
    DEFAULT_CAP,
    FTJ,
    Looks,
    _await_watch,
    _manifest,
    _phases,
    _start_operator,
    _stop,
    emulated_fleet,
)

from kubetune_operator.config import OperatorConfig


def _census() -> dict[str, list[int]]:
    """Live objects tracked by the garbage collector, by type: [count, shallow bytes]."""
    out: dict[str, list[int]] = {}
    for o in gc.get_objects():
        t = type(o)
        key = f"{t.__module__}.{t.__qualname__}"
        if isinstance(o, (types.CoroutineType, asyncio.Task)):  # whose code: kopf's or ours
            coro = o.get_coro() if isinstance(o, asyncio.Task) else o
            key += f" {getattr(coro, '__qualname__', '?')}"
        row = out.setdefault(key, [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(o, 0)
    return out


def _child() -> None:
    """Runs as the operator process: SIGUSR2 writes a census to $KT_SNAPSHOT.<k>."""
    count = [0]

    def dump(_sig: int, _frame: Any) -> None:
        count[0] += 1
        base = f"{os.environ['KT_SNAPSHOT']}.{count[0]}"
        Path(base + ".tmp").write_text(json.dumps(_census()))
        os.replace(base + ".tmp", base)  # complete when it appears

    signal.signal(signal.SIGUSR2, dump)
    # SIGUSR1: glibc's malloc_trim(0), to tell freed heap the allocator kept from live memory.
    signal.signal(signal.SIGUSR1, lambda *_: ctypes.CDLL("libc.so.6").malloc_trim(0))
    import runpy

    sys.argv = ["kubetune_operator", *sys.argv[2:]]
    runpy.run_module("kubetune_operator", run_name="__main__", alter_sys=True)


def _snapshot(proc: Any, base: Path, k: int) -> dict[str, list[int]]:
    proc.send_signal(signal.SIGUSR2)  # only the process we started
    path = Path(f"{base}.{k}")
    for _ in range(1200):
        time.sleep(0.5)
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
    raise RuntimeError("no census")


def report(before: dict[str, list[int]], after: dict[str, list[int]], n: int) -> None:
    zero = [0, 0]
    grown = {k: (v[0] - before.get(k, zero)[0], v[1] - before.get(k, zero)[1])
             for k, v in after.items()}  # fmt: skip
    total = sum(x[1] for x in grown.values())
    print(f"\nObjects the GC tracks, growth for {n} running jobs: {total / 2**20:.1f} MiB shallow "
          f"= {total / n / 1024:.1f} KiB per job\n")  # fmt: skip
    print("| type | objects per job | shallow KiB per job |\n|---|---:|---:|")
    for k, (count, size) in sorted(grown.items(), key=lambda kv: -kv[1][1])[:40]:
        print(f"| {k} | {count / n:.1f} | {size / n / 1024:.2f} |")


def main(n: int, restart: bool = False) -> None:
    with emulated_fleet(n, "kt-opmem-") as fleet:
        cluster, play, rank0, port = fleet.cluster, fleet.play, fleet.rank0, fleet.port
        base, log = fleet.tmp / "snap", fleet.tmp / "operator.log"
        proc = _start_operator(cluster.kubeconfig, log, DEFAULT_CAP, program=(__file__, "--child"),
                               env={"KT_SNAPSHOT": str(base)})  # fmt: skip
        try:
            _await_watch(cluster, proc, log)
            before = _snapshot(proc, base, 1)
            rss0 = rss_bytes(proc.pid)
            kubelet = Kubelet(cluster, play, rank0)
            kubelet.thread.start()
            for i in range(n):
                cluster.create(FTJ, _manifest(i, port), NS)
            t0 = time.monotonic()
            while _phases(cluster.emu)["Running"] < n and time.monotonic() - t0 < max(600, n):
                time.sleep(2)
            settle = OperatorConfig().status_interval + 10
            say(f"{n} running after {time.monotonic() - t0:.0f} s; settling {settle:.0f} s")
            time.sleep(settle)  # one status interval: progress written and paced
            rss1 = rss_bytes(proc.pid)
            after = _snapshot(proc, base, 2)
            if restart:  # the same jobs, seen by a new operator through its start-up listing
                _stop(proc)
                proc.wait(60)
                looks = Looks(rank0, time.monotonic())
                proc = _start_operator(cluster.kubeconfig, log, DEFAULT_CAP,
                                       program=(__file__, "--child"),
                                       env={"KT_SNAPSHOT": f"{base}.r"})  # fmt: skip
                t1 = time.monotonic()
                while looks() < n and time.monotonic() - t1 < max(600, n):
                    time.sleep(1)
                say(f"restarted: {looks()} jobs looked at after {time.monotonic() - t1:.0f} s; "
                    f"settling {settle:.0f} s")  # fmt: skip
                time.sleep(settle)
                rss2 = rss_bytes(proc.pid)
                restarted = _snapshot(proc, Path(f"{base}.r"), 1)
                proc.send_signal(signal.SIGUSR1)  # only the process we started
                time.sleep(3)
                trimmed = rss_bytes(proc.pid)
            kubelet.stop.set()
            kubelet.thread.join()
        finally:
            _stop(proc)
            proc.wait(60)
    print(f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB: "
          f"{(rss1 - rss0) / n / 1024:.1f} KiB per job")  # fmt: skip
    report(before, after, n)
    if restart:
        print(
            f"\nRestarted operator: RSS {rss2 / 2**20:.0f} MiB "
            f"({(rss2 - rss0) / n / 1024:.1f} KiB per job over the first one's start); "
            f"{trimmed / 2**20:.0f} MiB after malloc_trim(0)"
        )
        report(before, restarted, n)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child()
    else:
        args = [a for a in sys.argv[1:] if a != "--restart"]
        main(int(args[0]) if args else 500, restart="--restart" in sys.argv)
