"""Operator over the whole job lifecycle: N FineTuneJobs created in a burst, run, finished.

    python bench/operator_lifecycle.py [--quick] [--sizes 1000,2000] [--window 60]

For each N: a fresh API emulator (tests/operator, in this process on 127.0.0.1) and a fresh
operator process (`python -m kubetune_operator --standalone` with its default pacing), so
its CPU time and RSS are its own. The benchmark plays the Job controller and the kubelet
through the API with tests/operator/job_play.py: each Job gets its pod (Pending), a
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
import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import OPERATOR_TESTS, PY, ROOT, free_port, hwm_bytes, loadavg, rss_bytes, say

NS = "bench"
STEP_SECONDS = 2.0
TOTAL_STEPS = 100_000
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
FTJ = "kubetune.io/v1alpha1/finetunejobs"


def _tests() -> tuple[Any, Any]:
    sys.path.insert(0, str(OPERATOR_TESTS))
    import job_play
    import kube_cluster

    return kube_cluster, job_play


def pod_ip(i: int) -> str:
    n = i + 1
    return f"127.77.{n // 250}.{n % 250 + 1}"


def _manifest(i: int, port: int) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load((OPERATOR_TESTS / "ftj-basic.yaml").read_text())
    doc["metadata"] = {"name": f"job-{i:05d}", "namespace": NS}
    doc["spec"]["distributed"]["nodes"] = 1  # one pod per job: the kubelet's work halves
    doc["spec"].setdefault("metrics", {})["port"] = port
    return doc


class Rank0:
    """Every pod's /metrics on its own loopback IP, from one asyncio server in a thread."""

    def __init__(self, ips: list[str], port: int) -> None:
        from kubetune_operator.progress import _NAMES

        self.names = {v: k for k, v in _NAMES.items()}  # follows a rename of the gauges
        self.ips, self.port = ips, port
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.scrapes = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _text(self, ip: str) -> str:
        t0 = self.started.get(ip)
        step = 0 if t0 is None else int((time.monotonic() - t0) / STEP_SECONDS)
        step = TOTAL_STEPS if ip in self.finished else min(step, TOTAL_STEPS)
        n = self.names
        return (
            f"{n['step']} {step}\n{n['total_steps']} {TOTAL_STEPS}\n"
            f"{n['epoch']} {step / TOTAL_STEPS}\n{n['loss']} {2.0 - step * 1e-5}\n"
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            ip = writer.get_extra_info("sockname")[0]
            body = self._text(ip).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
            writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            self.scrapes += 1
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, host=self.ips, port=self.port, backlog=64)
        )
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> Rank0:
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _objects(emu: Any, plural: str) -> list[dict[str, Any]]:
    for _ in range(50):  # the emulator's loop may resize the dict while we read it
        try:
            return [
                obj
                for (res, ns, _n), obj in list(emu.objects.items())
                if res.plural == plural and ns == NS and not obj.deleted
            ]
        except RuntimeError:
            time.sleep(0.01)
    return []


def _raw(obj: Any) -> dict[str, Any]:
    return obj.raw if hasattr(obj, "raw") else dict(obj)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_operator(
    kubeconfig: Path, log: Path, cap: tuple[float, int], lease: bool = False
) -> Any:
    """The operator as its Deployment runs it: --standalone, or one replica electing a
    leader through the Lease (default timings: 15 s lease, 2 s retry)."""
    import subprocess

    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    cmd = [PY, "-m", "kubetune_operator", "--namespace", NS,
           "--metrics-port", "0", "--liveness-port", "0",
           "--qps", f"{cap[0]:g}", "--burst", str(cap[1])]  # fmt: skip
    cmd += ["--lease-namespace", NS] if lease else ["--standalone"]
    out = open(log, "ab")  # noqa: SIM115  (the child keeps it)
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)  # fmt: skip


def _stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)  # only the process we started
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait(5)


def _is_op(r: Any) -> bool:
    return "httpx" not in str(r.headers.get("User-Agent", ""))


def _method(r: Any) -> str:
    return str(r.method.value).upper()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class Kubelet:
    """Plays the Job controller and the kubelet: Job -> pod Pending -> Running (1 s later)."""

    def __init__(self, cluster: Any, play: Any, rank0: Rank0) -> None:
        self.cluster, self.play, self.rank0 = cluster, play, rank0
        self.pods: dict[str, dict[str, Any]] = {}  # job name -> its pod
        self.created: dict[str, float] = {}
        self.running: set[str] = set()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(4)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _create(self, job: str) -> None:
        (pod,) = self.play.create_pods(self.cluster, NS, job)
        self.pods[job] = pod
        self.created[job] = time.monotonic()

    def _run(self, job: str) -> None:
        ip = pod_ip(int(job.split("-")[1]))
        self.play.set_running(self.cluster, NS, self.pods[job], ip)
        self.rank0.started[ip] = time.monotonic()

    def _loop(self) -> None:
        seen: set[str] = set()
        while not self.stop.is_set():
            names = [_raw(o)["metadata"]["name"] for o in _objects(self.cluster.emu, "jobs")]
            new = [n for n in names if n not in seen]
            futures = {self.pool.submit(self._create, n): ("create", n) for n in new}
            seen.update(new)
            now = time.monotonic()
            due = [
                j for j, t in list(self.created.items()) if j not in self.running and now - t > 1
            ]
            self.running.update(due)
            futures |= {self.pool.submit(self._run, j): ("run", j) for j in due}
            for f, (what, job) in futures.items():
                try:
                    f.result()
                except Exception as exc:  # the emulator too slow: try again
                    say(f"kubelet: {what} {job}: {exc!r}; again")
                    (seen if what == "create" else self.running).discard(job)
            time.sleep(0.5)

    def finish(self, jobs: list[str]) -> None:
        def one(job: str) -> None:
            self.rank0.finished.add(pod_ip(int(job.split("-")[1])))
            self.play.set_terminated(self.cluster, NS, self.pods[job], 0, {"message": "done"})
            cond = [{"type": "Complete", "status": "True"}]
            self.play.set_job_status(self.cluster, NS, job, conditions=cond)

        list(self.pool.map(one, jobs))


def _lease_holder(cluster: Any) -> str:
    lease = cluster.get("coordination.k8s.io/v1/leases", NS, "kubetune-operator") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _phases(emu: Any) -> collections.Counter[str]:
    return collections.Counter(
        str((_raw(o).get("status") or {}).get("phase") or "-")
        for o in _objects(emu, "finetunejobs")
    )


class Looks:
    """Counts, in the new part of the emulator's log only (a full scan would slow the
    run), our client's reads of accepted specs: one per job at an operator's first look."""

    def __init__(self, emu: Any, since: int) -> None:
        self.emu, self.index, self.gets, self.first_at = emu, since, 0, 0.0

    def __call__(self) -> int:
        log = self.emu._requests
        for r in log[self.index : len(log)]:
            res = r.resource
            if _is_op(r) and _method(r) == "GET" and res and res.plural == "configmaps":
                self.gets += 1
                self.first_at = self.first_at or self.emu.received[r.id]
        self.index = len(log)
        return self.gets


def _failover(cluster: Any, log: Path, n: int, limit: float, cap: tuple[float, int]) -> Any:
    """Two replicas with the Lease: A leads and has looked at every job, B stands by; A is
    killed (SIGKILL by its PID: no release of the Lease, like a lost node). Seconds from
    the kill to B holding the Lease, to B's first look at a job, to B having looked at all.
    Returns B (still running) and the figures."""
    emu = cluster.emu
    looks = Looks(emu, len(cluster.requests()))
    a = _start_operator(cluster.kubeconfig, log, cap, lease=True)
    t0 = time.monotonic()
    while not _lease_holder(cluster) and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    holder_a = _lease_holder(cluster)
    while looks() < n and time.monotonic() - t0 < limit:
        time.sleep(0.5)
    b = _start_operator(cluster.kubeconfig, log, cap, lease=True)
    time.sleep(5)  # B is up and polling the Lease
    cpu_a = _cpu_seconds(a.pid)
    looks = Looks(emu, len(cluster.requests()))
    killed = time.monotonic()
    a.kill()  # only the process we started
    a.wait(10)
    while _lease_holder(cluster) in ("", holder_a) and time.monotonic() - killed < 120:
        time.sleep(0.1)
    took_lease = time.monotonic() - killed
    while looks() < n and time.monotonic() - killed < limit:
        time.sleep(0.5)
    return b, {
        "failover_lease_seconds": took_lease,
        "failover_first_look_seconds": (looks.first_at - killed) if looks.first_at else None,
        "failover_all_looked_seconds": time.monotonic() - killed,
        "failover_leader_cpu": cpu_a,
    }


def one_size(n: int, window: float, cap: tuple[float, int] = (50.0, 100)) -> dict[str, Any]:
    kc, play = _tests()
    port = free_port()
    ips = [pod_ip(i) for i in range(n)]
    with (
        tempfile.TemporaryDirectory(prefix="kt-oplife-") as tmp,
        kc.EmulatorServer(Path(tmp)) as cluster,
        Rank0(ips, port) as rank0,
    ):
        cluster.apply_crd()
        cluster.create_namespace(NS)
        # The simulated kubelet's own client: the emulator serving thousands of watches and
        # the operator can take longer than the tests' 10 s to answer.
        cluster.http.timeout = 120
        log = Path(tmp) / "operator.log"
        proc = _start_operator(cluster.kubeconfig, log, cap)
        emu = cluster.emu
        deadline = time.monotonic() + 120
        while not any(_is_op(r) and r.params.get("watch") for r in cluster.requests()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.1)
        time.sleep(1.0)
        kubelet = Kubelet(cluster, play, rank0)
        kubelet.thread.start()
        rss: list[int] = []
        cpu0, start = _cpu_seconds(proc.pid), len(cluster.requests())
        t0 = time.monotonic()
        for i in range(n):
            cluster.create(FTJ, _manifest(i, port), NS)
        posted = time.monotonic() - t0
        say(f"{n}: POSTed in {posted:.1f} s")
        limit = max(300.0, n * 0.5)
        while len(kubelet.running) < n and time.monotonic() - t0 < limit:
            time.sleep(1)
            rss.append(rss_bytes(proc.pid))
        all_running = time.monotonic() - t0
        cpu_create = _cpu_seconds(proc.pid) - cpu0
        say(f"{n}: {len(kubelet.running)} pods running after {all_running:.1f} s")
        # The operator has caught up: every FineTuneJob says Running (the status writes
        # of the Pending -> Running transitions share the --qps budget with creation).
        while _phases(emu)["Running"] < n and time.monotonic() - t0 < limit + all_running:
            time.sleep(1)
            rss.append(rss_bytes(proc.pid))
        all_running_status = time.monotonic() - t0
        say(f"{n}: every status Running after {all_running_status:.1f} s")
        # Steady state: after one status interval, `window` seconds.
        time.sleep(35)
        w0, wcpu0, wt0 = len(cluster.requests()), _cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - wt0 < window:
            time.sleep(1)
            rss.append(rss_bytes(proc.pid))
        w1, wcpu1, wt1 = len(cluster.requests()), _cpu_seconds(proc.pid), time.monotonic()
        rss_steady = rss_bytes(proc.pid)
        hwm = hwm_bytes(proc.pid)
        cpu_total_first = _cpu_seconds(proc.pid) - cpu0
        say(f"{n}: steady window done; restarting the operator")
        # Restart with every job running.
        _stop(proc)
        phases_at_restart = dict(_phases(emu))
        r0, tr0 = len(cluster.requests()), time.monotonic()
        proc = _start_operator(cluster.kubeconfig, log, cap)
        resynced = Looks(emu, r0)
        while resynced() < n and time.monotonic() - tr0 < limit:
            time.sleep(0.5)
        resync = time.monotonic() - tr0
        time.sleep(10)
        cpu_restart = _cpu_seconds(proc.pid)
        after = [r for r in cluster.requests()[r0:] if _is_op(r)]
        restart_creates = sum(
            1 for r in after if _method(r) == "POST" and "events" not in r.url.path
        )
        status = [r for r in after if _method(r) == "PATCH" and r.subresource == "status"]
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
        proc, failover = _failover(cluster, log, n, limit, cap)
        cpu_b0 = _cpu_seconds(proc.pid)
        say(f"{n}: failover {failover}; finishing the jobs")
        # The end: every pod succeeds, every Job completes.
        kubelet.stop.set()
        kubelet.thread.join()
        kubelet.finish(sorted(kubelet.running))

        def succeeded() -> int:
            return sum(
                1
                for o in _objects(emu, "finetunejobs")
                if (_raw(o).get("status") or {}).get("phase") == "Succeeded"
            )

        te = time.monotonic()
        while succeeded() < n and time.monotonic() - te < limit:
            time.sleep(1)
        done = succeeded()
        time.sleep(3)
        cpu1 = _cpu_seconds(proc.pid) - cpu_b0  # the finish only (resyncs: own figures)
        hwm = max(hwm, hwm_bytes(proc.pid))
        _stop(proc)
        reqs = cluster.requests()
        received = dict(emu.received)
    return _figures(n, reqs[start:], reqs[w0:w1], received, {
        "post_seconds": posted, "all_running_seconds": all_running,
        "window_seconds": wt1 - wt0, "window_cpu": wcpu1 - wcpu0,
        "cpu_create": cpu_create, "cpu_first_operator": cpu_total_first, "cpu_second": cpu1,
        "rss_steady": rss_steady, "rss_max_sampled": max(rss or [0]), "rss_hwm": hwm,
        "resync_seconds": resync, "restart_creates": restart_creates,
        "restart_status_writes": restart_status, "restart_progress_writes": restart_progress,
        "restart_status_keys": dict(restart_keys), "phases_at_restart": phases_at_restart,
        "cpu_restart_resync": cpu_restart, "all_running_status_seconds": all_running_status,
        "qps": cap[0], "burst": cap[1], **failover,
        "succeeded": done, "scrapes": rank0.scrapes,
        "load_end": loadavg(),
    })  # fmt: skip


def _by_kind(requests: list[Any]) -> collections.Counter[str]:
    """Requests by verb and resource (watches left out: one per resource, long-lived)."""
    return collections.Counter(
        f"{_method(r)} {r.resource.plural if r.resource else '-'}"
        + (f"/{r.subresource}" if r.subresource else "")
        for r in requests
        if not r.params.get("watch")
    )


def _figures(
    n: int, life: list[Any], window: list[Any], received: dict[int, float], m: dict[str, Any]
) -> dict[str, Any]:
    posts: dict[str, float] = {}
    jobs: dict[str, float] = {}
    first_status: dict[str, float] = {}  # the operator's first status write: work began
    ran: dict[str, float] = {}  # when the status first said Running
    ended: dict[str, float] = {}  # ... and Succeeded
    progress_only = 0  # status writes of progress alone (paced: <= 1 per status interval)
    for r in life:
        if _method(r) == "PATCH" and r.subresource == "status" and _is_op(r) and r.name:
            first_status.setdefault(r.name, received[r.id])
            st = (r.data or {}).get("status") or {} if isinstance(r.data, dict) else {}
            progress_only += bool(st) and set(st) <= {"progress"}
            if st.get("phase") == "Running":
                ran.setdefault(r.name, received[r.id])
            elif st.get("phase") == "Succeeded":
                ended.setdefault(r.name, received[r.id])
        if _method(r) != "POST" or r.resource is None:
            continue
        name = (
            ((r.data or {}).get("metadata") or {}).get("name", "")
            if isinstance(r.data, dict)
            else ""
        )
        if r.resource.plural == "finetunejobs" and not _is_op(r):
            posts[name] = received[r.id]
        elif r.resource.plural == "jobs" and _is_op(r):
            jobs.setdefault(name.rsplit("-a", 1)[0], received[r.id])
    latency = [jobs[k] - posts[k] for k in posts if k in jobs]
    # Split: POST -> first status write (kopf's queue: finalizer, daemon start, our
    # creation slot), first status write -> Job POST (our requests under the --qps cap).
    to_status = [first_status[k] - posts[k] for k in posts if k in first_status]
    to_job = [jobs[k] - first_status[k] for k in jobs if k in first_status]
    # The Lease's renewals (every 2 s by the leader while it leads) are not per job.
    op_life = [r for r in life if _is_op(r) and not (r.resource and r.resource.plural == "leases")]
    op_window = [r for r in window if _is_op(r)]
    by_kind = _by_kind(op_window)
    # Creation: every operator request until the last Job's POST (what the QPS cap spends
    # before the last job gets its Job).
    last_job = max(jobs.values(), default=0.0)
    creation = _by_kind([r for r in op_life if received[r.id] <= last_job])
    capped = sum(  # our client's (under --qps); kopf's finalizer patches and Events are not
        1
        for r in op_life
        if received[r.id] <= last_job
        and r.headers.get("User-Agent") == "kubetune-operator"
        and not r.params.get("watch")
    )
    minutes = m["window_seconds"] / 60
    status_w = sum(1 for r in op_window if _method(r) == "PATCH" and r.subresource == "status")
    return {
        "jobs": n,
        "create_to_job_p50": _pct(latency, 0.5),
        "create_to_job_p99": _pct(latency, 0.99),
        "create_to_job_p10": _pct(latency, 0.1),
        "create_to_status_p50": _pct(to_status, 0.5),
        "create_to_status_p99": _pct(to_status, 0.99),
        "status_to_job_p50": _pct(to_job, 0.5),
        "status_to_job_p99": _pct(to_job, 0.99),
        "jobs_with_job": len(latency),
        "requests_per_s_per_running_job": len(op_window) / m["window_seconds"] / n,
        "status_writes_per_running_minute": status_w / n / minutes,
        "window_requests_by_kind_per_job": {k: round(v / n, 3) for k, v in by_kind.most_common()},
        "creation_requests_by_kind_per_job": {
            k: round(v / n, 3) for k, v in creation.most_common()
        },
        "creation_requests_per_job": sum(creation.values()) / n,
        "creation_capped_requests_per_job": capped / n,
        "writes_per_job_life": sum(1 for r in op_life if _method(r) in WRITES) / n,
        "progress_writes_per_job_life": progress_only / n,
        "running_minutes_per_job": sum(ended[k] - ran[k] for k in ran if k in ended) / 60 / n,
        "requests_per_job_life": len(op_life) / n,
        "cpu_seconds_per_job": (m["cpu_first_operator"] + m["cpu_second"]) / n,
        "cpu_seconds_per_job_create": m["cpu_create"] / n,
        "cpu_share_steady": m["window_cpu"] / m["window_seconds"],
        **m,
    }


DEFAULT_CAP = (50.0, 100)  # the operator's --qps/--burst defaults
RAISED_CAP = (500.0, 1000)  # what docs/operations.md suggests for bursts of ~1000 jobs


def _sizes() -> list[int]:
    """KUBETUNE_BENCH_LIFECYCLE_SIZES=1000,2000,5000 (default 1000,2000: 5000 jobs take over
    an hour on a loaded 2-core machine)."""
    text = os.environ.get("KUBETUNE_BENCH_LIFECYCLE_SIZES", "1000,2000")
    return [int(x) for x in text.split(",") if x.strip()]


def run(quick: bool = False, sizes: list[int] | None = None, window: float = 0) -> dict[str, Any]:
    """Every size at the default cap, then the smallest with the cap raised."""
    sizes = sizes or ([50] if quick else _sizes())
    window = window or (20.0 if quick else 60.0)
    runs = [(n, DEFAULT_CAP) for n in sizes] + [(sizes[0], RAISED_CAP)]
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
    return {
        "quick": quick,
        "rows": rows,
        "settings": {
            "reconcile_interval": 10,
            "status_interval": 30,
            "qps": DEFAULT_CAP[0],
            "burst": DEFAULT_CAP[1],
            "raised_qps": RAISED_CAP[0],
            "raised_burst": RAISED_CAP[1],
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


EMULATOR_LIMITS = (
    "The API server is the operator tests' KMock-based emulator in the benchmark's own "
    "process (Python, sharing the 2 cores with the simulated kubelet, the pods' /metrics "
    "server and the operator): no admission or validation, no etcd (writes are in memory, "
    "no fsync, no 1-2 ms commit latency), no API priority and fairness (it never answers "
    "429 by itself), no watch cache or pagination, no Job controller or kubelet (played "
    "through the API by tests/operator/job_play.py, one pod per job). A real API server "
    "adds admission and etcd latency to every write and would throttle a client that "
    "exceeds its flow's share; the operator's own --qps/--burst cap applies to its client "
    "(kopf's watches, finalizer patches and Events go through kopf's)."
)


def _f(x: dict[str, Any], key: str, fmt: str = ".1f") -> str:
    v = x.get(key)
    return "-" if v is None else format(v, fmt)


def _doubling(rows: list[dict[str, Any]], key: str) -> str:
    pairs = itertools.pairwise(rows)
    text = ", ".join(
        f"{a['jobs']}->{b['jobs']} {b[key] / a[key]:.2f}x" for a, b in pairs if a.get(key)
    )
    return text or "one size only"


def report(r: dict[str, Any]) -> list[str]:
    """The BENCHMARKS.md section (bench/report.py)."""
    s, t = r["settings"], r["targets"]
    out = [
        "## 4b. Operator over the whole lifecycle\n",
        f"FineTuneJobs POSTed in one burst; each Job's pod Pending, then Running (its /metrics "
        f"advancing a step every {s['step_seconds']:g} s); once every status says Running, a "
        f"steady window of {s['window_seconds']:g} s; an operator restart with every job "
        "running; failover: two replicas electing a leader through the Lease (default "
        "timings: 15 s lease, 2 s retry), the leader killed (SIGKILL, no release); then every "
        f"pod Succeeded. Operator defaults: --reconcile-interval {s['reconcile_interval']}, "
        f"--status-interval {s['status_interval']}, --qps {s['qps']:g} --burst {s['burst']}; "
        f"the last row runs the smallest burst again with --qps {s.get('raised_qps', 0):g} "
        f"--burst {s.get('raised_burst', 0)}.\n",
        f"Emulator limits: {EMULATOR_LIMITS}\n",
        "| jobs | --qps / --burst | create->Job p50 / p99 s (p99 of: POST->first status "
        "write + that->Job) | capped requests per creation "
        "| all Running (status) after s | req/s per running job "
        "| status writes per job-minute | writes/job over its life (other + progress in its "
        "running minutes) | operator CPU s/job "
        "| RSS steady / peak MiB | restart: resync s, creates, status writes (+ paced progress) "
        "| failover: Lease taken / first look / all looked s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        cap = f"{x['qps']:g} / {x['burst']}" if "qps" in x else "50 / 100"
        out.append(
            f"| {x['jobs']} | {cap} | {x['create_to_job_p50']:.1f} / "
            f"{x['create_to_job_p99']:.1f} ({_f(x, 'create_to_status_p99')} + "
            f"{_f(x, 'status_to_job_p99')}) | {_f(x, 'creation_capped_requests_per_job')} | "
            f"{_f(x, 'all_running_status_seconds', '.0f')} | "
            f"{x['requests_per_s_per_running_job']:.4f} | "
            f"{x['status_writes_per_running_minute']:.2f} | {x['writes_per_job_life']:.1f}"
            + (
                f" ({x['writes_per_job_life'] - x['progress_writes_per_job_life']:.1f} + "
                f"{x['progress_writes_per_job_life']:.1f} progress in "
                f"{x['running_minutes_per_job']:.1f} running min)"
                if "running_minutes_per_job" in x
                else ""
            )
            + " | "
            f"{x['cpu_seconds_per_job']:.3f} | {x['rss_steady'] / 2**20:.0f} / "
            f"{x['rss_hwm'] / 2**20:.0f} | {x['resync_seconds']:.1f}, {x['restart_creates']}, "
            f"{x['restart_status_writes']} (+{x.get('restart_progress_writes', '?')}) | "
            f"{_f(x, 'failover_lease_seconds')} / {_f(x, 'failover_first_look_seconds')} / "
            f"{_f(x, 'failover_all_looked_seconds')} | {x['load_end']} |"
        )
    default = [x for x in r["rows"] if x.get("qps", 50) == s["qps"]]
    last = default[-1]
    kinds = ", ".join(f"{k} {v}" for k, v in last["window_requests_by_kind_per_job"].items())
    created = ", ".join(
        f"{k} {v}" for k, v in last.get("creation_requests_by_kind_per_job", {}).items()
    )
    out.append(
        f"\nPer doubling (default cap): p99 create->Job {_doubling(default, 'create_to_job_p99')}; "
        f"all Running {_doubling(default, 'all_running_status_seconds')}. "
        f"Requests per job until the last Job ({last['jobs']} jobs, kopf's finalizer PATCH "
        f"and Events included, not capped by --qps): {created or 'not recorded'}. "
        f"Steady-window requests per job: {kinds or 'none'}. Targets: p99 create->Job <= "
        f"{t['p99_1000']} s at 1000; <= 2.2x per doubling; <= {t['req_per_s_per_job']} "
        f"req/s per running job; <= {t['writes_per_job']} writes/job plus <= "
        f"{t['writes_per_minute']} per running minute; RSS < {t['rss_mb_5000']} MB at 5000.\n"
    )
    raised = [x for x in r["rows"] if x.get("qps", 50) != s["qps"]]
    if raised and default:
        a, b = default[0], raised[0]
        out.append(
            f"**The --qps trade-off.** A new job costs {_f(a, 'creation_capped_requests_per_job')}"
            f" requests of the operator's capped client (status, ConfigMap, Service, Job), so a "
            f"burst of N jobs gets its last Job after about N x that / --qps seconds, whatever "
            f"the order. At the default --qps {a['qps']:g} --burst {a['burst']}, {a['jobs']} "
            f"jobs: p99 {a['create_to_job_p99']:.1f} s (p50 {a['create_to_job_p50']:.1f} s: "
            f"jobs are created depth-first, 16 at a time, so the first get their Job at once). "
            f"At --qps {b['qps']:g} --burst {b['burst']}: p99 {b['create_to_job_p99']:.1f} s, "
            "where the emulator and the 2 shared cores, not the cap, set the pace. The default "
            "stays: it is kube-scheduler's (50/100), above controller-runtime's 20/30, and well "
            "inside what API priority and fairness gives service accounts (the workload-low "
            "level, about 40% of the server's concurrency, shared fairly per client); a cluster "
            "that takes bursts of thousands of jobs raises `operator.apiQPS`/`apiBurst` "
            "(docs/operations.md#api-request-rate). A 429 is retried after its Retry-After, so a "
            "cap set too high is paced by the server instead of failing.\n"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes")
    p.add_argument("--window", type=float, default=0)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else None
    print(json.dumps(run(a.quick, sizes, a.window)["rows"], indent=1, default=str))


if __name__ == "__main__":
    main()
