"""Operator over the whole job lifecycle: N FineTuneJobs created in a burst, run, finished.

    python bench/operator_lifecycle.py [--quick] [--sizes 1000,2000] [--window 60]

For each N: a fresh API emulator (tests/support/kube, in this process on 127.0.0.1) and a fresh
operator process (`python -m kubetune_operator --standalone` with its default pacing), so
its CPU time and RSS are its own. The benchmark plays the Job controller and the kubelet
through the API with tests/support/kube/job_play.py: each Job gets its pod (Pending), a
second later Running with its own loopback IP (127.77.x.y), where one asyncio server in
this process answers every pod's /metrics with a step that advances every STEP_SECONDS.
Then a steady-state window, an operator restart with every job running, and the end:
pods Succeeded, Jobs Complete, until every FineTuneJob says Succeeded.

Figures (requests from the emulator's request log, the benchmark's own httpx requests
left out; times are the emulator's arrival times): p50/p99 seconds from a FineTuneJob's
POST to its Job's POST; API requests per second per running job and status writes per
job per running minute in the steady window; writes per job over its life; operator CPU
seconds per job (utime+stime of the operator process); RSS; seconds to resync after a
restart (every job reconciled again), with the creates and status writes it made.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import OPERATOR_TESTS, PY, ROOT, free_port, hwm_bytes, loadavg, rss_bytes, say
from lifecycle_pods import NS, STEP_SECONDS, Kubelet, Rank0, _raw, objects, pod_ip
from lifecycle_report import figures, is_op, method

from kubetune_api import allocator
from kubetune_operator.config import MALLOC_SETTINGS, OperatorConfig

FTJ = "kubetune.io/v1alpha1/finetunejobs"


def _tests() -> tuple[Any, Any]:
    from tests.support.kube import cluster, job_play

    return cluster, job_play


def _manifest(i: int, port: int) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load((OPERATOR_TESTS / "ftj-basic.yaml").read_text())
    doc["metadata"] = {"name": f"job-{i:05d}", "namespace": NS}
    doc["spec"]["distributed"]["nodes"] = 1  # one pod per job: the kubelet's work halves
    doc["spec"].setdefault("metrics", {})["port"] = port
    return doc


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_operator(
    kubeconfig: Path,
    log: Path,
    cap: tuple[float, int],
    lease: bool = False,
    program: tuple[str, ...] = ("-m", "kubetune_operator"),
    env: dict[str, str] | None = None,
) -> Any:
    """The operator as its Deployment runs it: --standalone, or one replica electing a
    leader through the Lease (default timings: 15 s lease, 2 s retry). `program`: what
    Python runs (operator_memory.py runs it inside its probe). The allocator is the one
    `python -m kubetune_operator` would re-execute onto (glibc's by default;
    KUBETUNE_ALLOCATOR=jemalloc), set here so a probe program runs on it too."""
    import subprocess

    env = {**os.environ, **(env or {}), "KUBECONFIG": str(kubeconfig)}
    env = allocator.preload_env(env, settings=MALLOC_SETTINGS) or env
    cmd = [PY, *program, "--namespace", NS,
           "--metrics-port", "0", "--liveness-port", "0",
           "--qps", f"{cap[0]:g}", "--burst", str(cap[1])]  # fmt: skip
    cmd += ["--lease-namespace", NS] if lease else ["--standalone"]
    out = open(log, "ab")  # noqa: SIM115  (the child keeps it)
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)  # fmt: skip


def _await_watch(cluster: Any, proc: Any, log: Path) -> None:
    """Until the operator watches (its startup done), or its log if it exited."""
    deadline = time.monotonic() + 120
    while not any(is_op(r) and r.params.get("watch") for r in cluster.requests()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.1)
    time.sleep(1.0)


def _stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)  # only the process we started
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait(5)


def _lease_holder(cluster: Any) -> str:
    lease = cluster.get("coordination.k8s.io/v1/leases", NS, "kubetune-operator") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _phases(emu: Any) -> collections.Counter[str]:
    return collections.Counter(
        str((_raw(o).get("status") or {}).get("phase") or "-") for o in objects(emu, "finetunejobs")
    )


class Looks:
    """Running jobs an operator has looked at since `since` (monotonic): a pass over a
    running job scrapes its rank 0, and a new operator has no pacing yet, so its first pass
    does. (Its API reads do not tell: since listing.py a start lists the spec ConfigMaps
    once per namespace instead of a GET per job.)"""

    def __init__(self, rank0: Rank0, since: float) -> None:
        self.rank0, self.since, self.first_at = rank0, since, 0.0

    def __call__(self) -> int:
        times = [t for t in list(self.rank0.scraped_at.values()) if t >= self.since]
        if times:
            self.first_at = min(times)
        return len(times)


def _failover(
    cluster: Any, rank0: Rank0, log: Path, n: int, limit: float, cap: tuple[float, int]
) -> Any:
    """Two replicas with the Lease: A leads and has looked at every job, B stands by; A is
    killed (SIGKILL by its PID: no release of the Lease, like a lost node). Seconds from
    the kill to B holding the Lease, to B's first look at a job, to B having looked at all.
    Returns B (still running), a MemoryWatch on B (its phase names where its peak came) and
    the figures."""
    looks = Looks(rank0, time.monotonic())
    a = _start_operator(cluster.kubeconfig, log, cap, lease=True)
    t0 = time.monotonic()
    while not _lease_holder(cluster) and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    holder_a = _lease_holder(cluster)
    while looks() < n and time.monotonic() - t0 < limit:
        time.sleep(0.5)
    b = _start_operator(cluster.kubeconfig, log, cap, lease=True)
    watch = MemoryWatch(b.pid)
    watch.phase = "standby"
    time.sleep(5)  # B is up and polling the Lease
    cpu_a = _cpu_seconds(a.pid)
    killed = time.monotonic()
    looks = Looks(rank0, killed)
    a.kill()  # only the process we started
    a.wait(10)
    watch.phase = "taking over"
    while _lease_holder(cluster) in ("", holder_a) and time.monotonic() - killed < 120:
        time.sleep(0.1)
    took_lease = time.monotonic() - killed
    while looks() < n and time.monotonic() - killed < limit:
        time.sleep(0.5)
    watch.phase = "after the takeover"
    return (
        b,
        watch,
        {
            "failover_lease_seconds": took_lease,
            "failover_first_look_seconds": (looks.first_at - killed) if looks.first_at else None,
            "failover_all_looked_seconds": time.monotonic() - killed,
            "failover_leader_cpu": cpu_a,
        },
    )


@contextlib.contextmanager
def emulated_fleet(n: int, prefix: str) -> Iterator[Fleet]:
    """The API emulator with the CRD and namespace, and rank 0's /metrics for n pods: what
    every operator benchmark runs against (this one, operator_memory, operator_resync)."""
    kc, play = _tests()
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        kc.EmulatorServer(Path(tmp)) as cluster,
        Rank0([pod_ip(i) for i in range(n)], port) as rank0,
    ):
        cluster.apply_crd()
        cluster.create_namespace(NS)
        # The simulated kubelet's own client: the emulator serving thousands of watches and
        # the operator can take longer than the tests' 10 s to answer.
        cluster.http.timeout = 120
        yield Fleet(cluster, play, rank0, port, Path(tmp))


@dataclasses.dataclass
class Fleet:
    cluster: Any
    play: Any  # tests/support/kube/job_play.py
    rank0: Rank0
    port: int  # rank 0's /metrics port (every FineTuneJob's spec.metrics.port)
    tmp: Path


class MemoryWatch:
    """The operator's RSS five times a second, and when (in which phase) its peak (VmHWM) was
    reached: a peak shorter than the main loop's one-second look would show only as VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid, self.phase, self.t0 = pid, "start", time.monotonic()
        self.samples: list[int] = []
        self.by_phase: dict[str, int] = {}  # the largest RSS sampled in each phase
        self.peak, self.peak_at, self.peak_phase = 0, 0.0, "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError):
                rss, phase = rss_bytes(self.pid), self.phase
                self.samples.append(rss)
                self.by_phase[phase] = max(rss, self.by_phase.get(phase, 0))
                hwm = hwm_bytes(self.pid)
                if hwm > self.peak + 2**20:
                    self.peak, self.peak_at = hwm, time.monotonic() - self.t0
                    self.peak_phase = self.phase

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def one_size(n: int, window: float, cap: tuple[float, int] | None = None) -> dict[str, Any]:
    cap = cap or DEFAULT_CAP
    with emulated_fleet(n, "kt-oplife-") as fleet:
        cluster, play, rank0, port = fleet.cluster, fleet.play, fleet.rank0, fleet.port
        log = fleet.tmp / "operator.log"
        proc = _start_operator(cluster.kubeconfig, log, cap)
        emu = cluster.emu
        _await_watch(cluster, proc, log)
        malloc = allocator.in_use(f"/proc/{proc.pid}/maps")
        kubelet = Kubelet(cluster, play, rank0)
        kubelet.thread.start()
        memory = MemoryWatch(proc.pid)
        memory.phase = "posting"
        cpu0, start = _cpu_seconds(proc.pid), len(cluster.requests())
        t0 = time.monotonic()
        for i in range(n):
            cluster.create(FTJ, _manifest(i, port), NS)
        posted = time.monotonic() - t0
        say(f"{n}: POSTed in {posted:.1f} s")
        memory.phase = "creating"
        limit = max(300.0, n * 0.5)
        while len(kubelet.running) < n and time.monotonic() - t0 < limit:
            time.sleep(1)
        all_running = time.monotonic() - t0
        cpu_create = _cpu_seconds(proc.pid) - cpu0
        say(f"{n}: {len(kubelet.running)} pods running after {all_running:.1f} s")
        # The operator has caught up: every FineTuneJob says Running (the status writes
        # of the Pending -> Running transitions share the --qps budget with creation).
        memory.phase = "statuses"
        while _phases(emu)["Running"] < n and time.monotonic() - t0 < limit + all_running:
            time.sleep(1)
        all_running_status = time.monotonic() - t0
        say(f"{n}: every status Running after {all_running_status:.1f} s")
        # Steady state: after one status interval, `window` seconds.
        memory.phase = "first interval"
        time.sleep(OperatorConfig().status_interval + 5)
        memory.phase = "steady"
        w0, wcpu0, wt0 = len(cluster.requests()), _cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - wt0 < window:
            time.sleep(1)
        w1, wcpu1, wt1 = len(cluster.requests()), _cpu_seconds(proc.pid), time.monotonic()
        rss_steady = rss_bytes(proc.pid)
        hwm = hwm_bytes(proc.pid)
        memory.stop()
        cpu_total_first = _cpu_seconds(proc.pid) - cpu0
        say(f"{n}: steady window done; restarting the operator")
        # Restart with every job running.
        _stop(proc)
        phases_at_restart = dict(_phases(emu))
        r0, tr0 = len(cluster.requests()), time.monotonic()
        proc = _start_operator(cluster.kubeconfig, log, cap)
        resynced = Looks(rank0, tr0)
        while resynced() < n and time.monotonic() - tr0 < limit:
            time.sleep(0.5)
        resync = time.monotonic() - tr0
        time.sleep(10)
        rss_restarted, hwm_restarted = rss_bytes(proc.pid), hwm_bytes(proc.pid)
        cpu_restart = _cpu_seconds(proc.pid)
        after = [r for r in cluster.requests()[r0:] if is_op(r)]
        restart_creates = sum(
            1 for r in after if method(r) == "POST" and "events" not in r.url.path
        )
        status = [r for r in after if method(r) == "PATCH" and r.subresource == "status"]
        # A progress-only write 30 s after a job's first look is the pacing at work; anything
        # else (phase, conditions, message, attempt) right after a restart would be spurious.
        restart_status = sum(
            1 for r in status if set((r.data or {}).get("status") or {}) - {"progress"}
        )
        restart_progress = len(status) - restart_status
        restart_keys = collections.Counter(
            ",".join(sorted((r.data or {}).get("status") or {})) for r in status
        )
        say(f"{n}: resync {resync:.1f} s; failover with two replicas")
        _stop(proc)
        proc, takeover, failover = _failover(cluster, rank0, log, n, limit, cap)
        cpu_b0 = _cpu_seconds(proc.pid)
        say(f"{n}: failover {failover}; finishing the jobs")
        takeover.phase = "finishing"
        # The end: every pod succeeds, every Job completes.
        kubelet.stop.set()
        kubelet.thread.join()
        kubelet.finish(sorted(kubelet.running))

        def succeeded() -> int:
            return sum(
                1
                for o in objects(emu, "finetunejobs")
                if (_raw(o).get("status") or {}).get("phase") == "Succeeded"
            )

        te = time.monotonic()
        while succeeded() < n and time.monotonic() - te < limit:
            time.sleep(1)
        done = succeeded()
        time.sleep(3)
        cpu1 = _cpu_seconds(proc.pid) - cpu_b0  # the finish only (resyncs: own figures)
        # The replica that took over: its start-up resync and the finish, a process of its own.
        rss_takeover, hwm_takeover = rss_bytes(proc.pid), hwm_bytes(proc.pid)
        takeover.stop()
        _stop(proc)
        reqs = cluster.requests()
        received = dict(emu.received)
    return figures(n, reqs[start:], reqs[w0:w1], received, {
        "post_seconds": posted, "all_running_seconds": all_running,
        "window_seconds": wt1 - wt0, "window_cpu": wcpu1 - wcpu0,
        "cpu_create": cpu_create, "cpu_first_operator": cpu_total_first, "cpu_second": cpu1,
        "rss_steady": rss_steady, "rss_max_sampled": max(memory.samples or [0]), "rss_hwm": hwm,
        "rss_hwm_phase": memory.peak_phase, "rss_hwm_at": memory.peak_at,
        "rss_takeover_end": rss_takeover, "rss_hwm_takeover": hwm_takeover,
        "rss_hwm_takeover_phase": takeover.peak_phase,
        "rss_takeover_by_phase": takeover.by_phase,
        "rss_restarted": rss_restarted, "rss_hwm_restarted": hwm_restarted,
        "resync_seconds": resync, "restart_creates": restart_creates,
        "restart_status_writes": restart_status, "restart_progress_writes": restart_progress,
        "restart_status_keys": dict(restart_keys), "phases_at_restart": phases_at_restart,
        "cpu_restart_resync": cpu_restart, "all_running_status_seconds": all_running_status,
        "qps": cap[0], "burst": cap[1], "allocator": malloc, **failover,
        "succeeded": done, "scrapes": rank0.scrapes,
        "load_end": loadavg(),
    })  # fmt: skip


DEFAULT_CAP = (OperatorConfig.api_qps, OperatorConfig.api_burst)  # --qps/--burst defaults
# What docs/operations.md suggests for a small shared API server (kube-scheduler's and
# Kubeflow Trainer's default): the trade-off row.
OTHER_CAP = (50.0, 100)


def _sizes() -> list[int]:
    """KUBETUNE_BENCH_LIFECYCLE_SIZES=1000,2000,5000 (default 1000,2000: 5000 jobs take over
    an hour on a loaded 2-core machine)."""
    text = os.environ.get("KUBETUNE_BENCH_LIFECYCLE_SIZES", "1000,2000")
    return [int(x) for x in text.split(",") if x.strip()]


def run(
    quick: bool = False, sizes: list[int] | None = None, window: float = 0, other: bool = True
) -> dict[str, Any]:
    """Every size at the default cap, then (`other`) the smallest at the other cap."""
    sizes = sizes or ([50] if quick else _sizes())
    window = window or (20.0 if quick else 60.0)
    runs = [(n, DEFAULT_CAP) for n in sizes] + ([(sizes[0], OTHER_CAP)] if other else [])
    rows = []
    for n, cap in runs:
        r = one_size(n, window, cap)
        rows.append(r)
        say(
            f"lifecycle {n} (--qps {cap[0]:g} --burst {cap[1]}): "
            f"p99 create->Job {r['create_to_job_p99']:.1f} s, "
            f"{r['requests_per_s_per_running_job']:.4f} req/s/job, "
            f"{r['writes_per_job_life']:.1f} writes/job, RSS {r['rss_hwm'] / 2**20:.0f} MiB"
        )
        # The whole row too: a run stopped before its last size (5000 jobs take an hour)
        # keeps the rows it finished in its log.
        say(f"lifecycle row {json.dumps(r, default=str, sort_keys=True)}")
    return {
        "quick": quick,
        "rows": rows,
        "settings": {
            "reconcile_interval": 10,
            "status_interval": OperatorConfig().status_interval,
            "qps": DEFAULT_CAP[0],
            "burst": DEFAULT_CAP[1],
            "other_qps": OTHER_CAP[0],
            "other_burst": OTHER_CAP[1],
            "step_seconds": STEP_SECONDS,
            "window_seconds": window,
        },
        "targets": {
            "p99_1000": 10,
            "req_per_s_per_job": 0.05,
            "writes_per_job": 10,
            "writes_per_minute": 1,
            "rss_mb_5000": 300,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes")
    p.add_argument("--window", type=float, default=0)
    p.add_argument("--default-cap-only", action="store_true",
                   help="skip the trade-off row at the other --qps/--burst")  # fmt: skip
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else None
    rows = run(a.quick, sizes, a.window, other=not a.default_cap_only)["rows"]
    print(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
