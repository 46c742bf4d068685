"""An operator restart with N running jobs, alone: how long until it has looked at them all.

    python bench/operator_resync.py 3000 [--profile out.prof]

The quick companion of operator_lifecycle.py (which measures the whole lifecycle, over an
hour at 5000 jobs): N FineTuneJobs brought to Running with the cap raised (--qps 500, so the
creation takes a minute, not ten), the operator stopped and started again, then the seconds
until every running job's rank 0 was scraped (its first pass) and the operator's CPU
seconds. --profile runs the restarted operator under cProfile (how the quadratic start-up
in bench/findings.md was found), --profile-creation the one that creates the jobs. A
restart sends no capped request besides the spec ConfigMaps' listing, so the raised cap
does not set the resync's pace.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from common import hwm_bytes, rss_bytes, say
from lifecycle_report import is_op, method
from operator_lifecycle import (
    FTJ,
    NS,
    Kubelet,
    Looks,
    MemoryWatch,
    _await_watch,
    _cpu_seconds,
    _manifest,
    _phases,
    _start_operator,
    _stop,
    emulated_fleet,
)

CAP = (500.0, 1000)


def _program(profile: str | None) -> dict[str, tuple[str, ...]]:
    """_start_operator's `program` for an operator under cProfile (written at its exit)."""
    return (
        {"program": ("-m", "cProfile", "-o", profile, "-m", "kubetune_operator")} if profile else {}
    )


def run(
    n: int, profile: str | None = None, profile_creation: str | None = None
) -> dict[str, float]:
    with emulated_fleet(n, "kt-resync-") as fleet:
        cluster, play, rank0, port = fleet.cluster, fleet.play, fleet.rank0, fleet.port
        log = fleet.tmp / "operator.log"
        proc = _start_operator(cluster.kubeconfig, log, CAP, **_program(profile_creation))
        _await_watch(cluster, proc, log)
        kubelet = Kubelet(cluster, play, rank0)
        kubelet.thread.start()
        t0 = time.monotonic()
        for i in range(n):
            cluster.create(FTJ, _manifest(i, port), NS)
        while _phases(cluster.emu)["Running"] < n and time.monotonic() - t0 < max(600, n):
            time.sleep(1)
        say(f"{n} Running after {time.monotonic() - t0:.0f} s; restarting the operator")
        time.sleep(5)
        _stop(proc)
        r0, tr0 = len(cluster.requests()), time.monotonic()
        proc = _start_operator(cluster.kubeconfig, log, CAP, **_program(profile))
        looks = Looks(rank0, tr0)
        memory = MemoryWatch(proc.pid)
        memory.phase = "resync"
        while looks() < n and time.monotonic() - tr0 < max(900, n):
            time.sleep(0.5)
        resync, cpu = time.monotonic() - tr0, _cpu_seconds(proc.pid)
        memory.phase = "after"
        time.sleep(10)
        memory.stop()
        rss = {
            "rss_after": rss_bytes(proc.pid) >> 20,
            "rss_peak": hwm_bytes(proc.pid) >> 20,
            "rss_peak_phase": memory.peak_phase,
            "rss_peak_at": round(memory.peak_at, 1),
        }
        sent = collections.Counter(
            f"{method(r)} {r.url.path}" for r in cluster.requests()[r0:] if is_op(r)
        )
        say(f"resync {resync:.1f} s, operator CPU {cpu:.1f} s; requests {sent.most_common(5)}")
        say(f"restarted operator's memory (MiB): {rss}")
        _stop(proc)
        kubelet.stop.set()
        kubelet.thread.join()
    return {"jobs": n, "looked": looks(), "resync_seconds": resync, "operator_cpu": cpu, **rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jobs", type=int)
    p.add_argument("--profile", help="cProfile output of the restarted operator")
    p.add_argument("--profile-creation", help="cProfile output of the operator that creates")
    a = p.parse_args()
    print(json.dumps(run(a.jobs, a.profile, a.profile_creation)))


if __name__ == "__main__":
    main()
