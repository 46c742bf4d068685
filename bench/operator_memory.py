"""Where the operator's memory per job goes: N FineTuneJobs brought to Running (as in
bench/operator_lifecycle.py), one look inside the operator before the burst and one with
every job running; the growth by object type, divided by N.

    python bench/operator_memory.py [N]        # default 500; prints the table, saves nothing

A probe for findings.md, not a benchmark in run_all. The census (objects the garbage
collector tracks, by type, shallow sizes) costs nothing until it is taken; KT_TRACE=1 adds
tracemalloc (it slows the operator several times: a 300-job run did not finish in 20 min
at load 11). Neither counts the allocator's fragmentation, which RSS includes.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

from common import PY, ROOT, free_port, rss_bytes, say
from lifecycle_pods import NS, Kubelet, Rank0, _raw, objects, pod_ip
from lifecycle_report import is_op
from operator_lifecycle import FTJ, _manifest, _tests


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


def _traced_child() -> None:
    """Runs as the operator process: SIGUSR2 writes a census (and, with KT_TRACE=1, a
    tracemalloc snapshot) to $KT_SNAPSHOT.<k>."""
    trace = os.environ.get("KT_TRACE") == "1"
    if trace:
        tracemalloc.start(6)
    count = [0]

    def dump(_sig: int, _frame: Any) -> None:
        count[0] += 1
        base = f"{os.environ['KT_SNAPSHOT']}.{count[0]}"
        if trace:
            tracemalloc.take_snapshot().dump(base + ".trace")
        Path(base + ".tmp").write_text(json.dumps({"census": _census()}))
        os.replace(base + ".tmp", base)  # complete when it appears

    signal.signal(signal.SIGUSR2, dump)
    import runpy

    sys.argv = ["kubetune_operator", *sys.argv[2:]]
    runpy.run_module("kubetune_operator", run_name="__main__", alter_sys=True)


def _snapshot(proc: Any, base: Path, k: int) -> dict[str, Any]:
    proc.send_signal(signal.SIGUSR2)  # only the process we started
    path = Path(f"{base}.{k}")
    for _ in range(1200):
        time.sleep(0.5)
        if path.exists():
            out = json.loads(path.read_text())
            trace = Path(f"{path}.trace")
            if trace.exists():
                out["trace"] = tracemalloc.Snapshot.load(str(trace))
            return out  # type: ignore[no-any-return]
    raise RuntimeError("no snapshot")


def report(before: dict[str, Any], after: dict[str, Any], n: int) -> None:
    b, a = before["census"], after["census"]
    grown = {k: (v[0] - b.get(k, [0, 0])[0], v[1] - b.get(k, [0, 0])[1]) for k, v in a.items()}
    total = sum(x[1] for x in grown.values())
    print(f"\nObjects the GC tracks, growth for {n} running jobs: {total / 2**20:.1f} MiB shallow "
          f"= {total / n / 1024:.1f} KiB per job\n")  # fmt: skip
    print("| type | objects per job | shallow KiB per job |\n|---|---:|---:|")
    for k, (count, size) in sorted(grown.items(), key=lambda kv: -kv[1][1])[:40]:
        print(f"| {k} | {count / n:.1f} | {size / n / 1024:.2f} |")
    if "trace" not in after:
        return
    diff = after["trace"].compare_to(before["trace"], "traceback")
    total = sum(d.size_diff for d in diff)
    print(f"\ntracemalloc: {total / 2**20:.1f} MiB = {total / n / 1024:.1f} KiB per job")
    by_owner: collections.Counter[str] = collections.Counter()
    for d in diff:
        frames = list(d.traceback)
        ours = next((f for f in frames if "kubetune_operator" in f.filename), None)
        kopf = next((f for f in frames if "/kopf/" in f.filename), None)
        pick = ours or kopf or frames[0]
        by_owner[f"{pick.filename.split('site-packages/')[-1]}:{pick.lineno}"] += d.size_diff
    print("| allocated under (innermost kubetune_operator, else kopf) | KiB/job |\n|---|---:|")
    for where, size in by_owner.most_common(25):
        print(f"| {where} | {size / n / 1024:.2f} |")


def main(n: int) -> None:
    kc, play = _tests()
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="kt-opmem-") as tmp,
        kc.EmulatorServer(Path(tmp)) as cluster,
        Rank0([pod_ip(i) for i in range(n)], port) as rank0,
    ):
        import subprocess

        cluster.apply_crd()
        cluster.create_namespace(NS)
        cluster.http.timeout = 120
        base = Path(tmp) / "snap"
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KT_SNAPSHOT": str(base)}
        cmd = [PY, __file__, "--child", "--namespace", NS, "--metrics-port", "0",
               "--liveness-port", "0", "--standalone"]  # fmt: skip
        log = open(Path(tmp) / "operator.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)  # fmt: skip
        try:
            while not any(is_op(r) and r.params.get("watch") for r in cluster.requests()):
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "operator.log").read_text()[-3000:])
                time.sleep(0.2)
            time.sleep(2)
            before = _snapshot(proc, base, 1)
            rss0 = rss_bytes(proc.pid)
            kubelet = Kubelet(cluster, play, rank0)
            kubelet.thread.start()
            for i in range(n):
                cluster.create(FTJ, _manifest(i, port), NS)
            t0 = time.monotonic()
            while time.monotonic() - t0 < max(600, n):
                phases = collections.Counter(
                    str((_raw(o).get("status") or {}).get("phase"))
                    for o in objects(cluster.emu, "finetunejobs")
                )
                if phases["Running"] >= n:
                    break
                time.sleep(2)
            say(f"{n} running after {time.monotonic() - t0:.0f} s; settling 40 s")
            time.sleep(40)  # one status interval: progress written and paced
            rss1 = rss_bytes(proc.pid)
            after = _snapshot(proc, base, 2)
            kubelet.stop.set()
            kubelet.thread.join()
        finally:
            proc.send_signal(signal.SIGTERM)  # only the process we started
            proc.wait(60)
    print(f"RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB: "
          f"{(rss1 - rss0) / n / 1024:.1f} KiB per job")  # fmt: skip
    report(before, after, n)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _traced_child()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
