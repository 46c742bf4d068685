"""The figures bench/operator_lifecycle.py derives from the emulator's request log, and
its BENCHMARKS.md section (bench/report.py calls `report`)."""

from __future__ import annotations

import collections
import itertools
import math
from typing import Any

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def is_op(r: Any) -> bool:
    return "httpx" not in str(r.headers.get("User-Agent", ""))


def method(r: Any) -> str:
    return str(r.method.value).upper()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _by_kind(requests: list[Any]) -> collections.Counter[str]:
    """Requests by verb and resource (watches left out: one per resource, long-lived)."""
    return collections.Counter(
        f"{method(r)} {r.resource.plural if r.resource else '-'}"
        + (f"/{r.subresource}" if r.subresource else "")
        for r in requests
        if not r.params.get("watch")
    )


def figures(
    n: int, life: list[Any], window: list[Any], received: dict[int, float], m: dict[str, Any]
) -> dict[str, Any]:
    posts: dict[str, float] = {}
    jobs: dict[str, float] = {}
    first_status: dict[str, float] = {}  # the operator's first status write: work began
    ran: dict[str, float] = {}  # when the status first said Running
    ended: dict[str, float] = {}  # ... and Succeeded
    progress_only = 0  # status writes of progress alone (paced: <= 1 per status interval)
    for r in life:
        if method(r) == "PATCH" and r.subresource == "status" and is_op(r) and r.name:
            first_status.setdefault(r.name, received[r.id])
            st = (r.data or {}).get("status") or {} if isinstance(r.data, dict) else {}
            progress_only += bool(st) and set(st) <= {"progress"}
            if st.get("phase") == "Running":
                ran.setdefault(r.name, received[r.id])
            elif st.get("phase") == "Succeeded":
                ended.setdefault(r.name, received[r.id])
        if method(r) != "POST" or r.resource is None:
            continue
        name = (
            ((r.data or {}).get("metadata") or {}).get("name", "")
            if isinstance(r.data, dict)
            else ""
        )
        if r.resource.plural == "finetunejobs" and not is_op(r):
            posts[name] = received[r.id]
        elif r.resource.plural == "jobs" and is_op(r):
            jobs.setdefault(name.rsplit("-a", 1)[0], received[r.id])
    latency = [jobs[k] - posts[k] for k in posts if k in jobs]
    # Split: POST -> first status write (kopf's queue: finalizer, the scheduler's first pass, our
    # creation slot), first status write -> Job POST (our requests under the --qps cap).
    to_status = [first_status[k] - posts[k] for k in posts if k in first_status]
    to_job = [jobs[k] - first_status[k] for k in jobs if k in first_status]
    # The Lease's renewals (every 2 s by the leader while it leads) are not per job.
    op_life = [r for r in life if is_op(r) and not (r.resource and r.resource.plural == "leases")]
    op_window = [r for r in window if is_op(r)]
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
    status_w = sum(1 for r in op_window if method(r) == "PATCH" and r.subresource == "status")
    return {
        "jobs": n,
        "create_to_job_p50": pct(latency, 0.5),
        "create_to_job_p99": pct(latency, 0.99),
        "create_to_job_p10": pct(latency, 0.1),
        "create_to_status_p50": pct(to_status, 0.5),
        "create_to_status_p99": pct(to_status, 0.99),
        "status_to_job_p50": pct(to_job, 0.5),
        "status_to_job_p99": pct(to_job, 0.99),
        "jobs_with_job": len(latency),
        "requests_per_s_per_running_job": len(op_window) / m["window_seconds"] / n,
        "status_writes_per_running_minute": status_w / n / minutes,
        "window_requests_by_kind_per_job": {k: round(v / n, 3) for k, v in by_kind.most_common()},
        "creation_requests_by_kind_per_job": {
            k: round(v / n, 3) for k, v in creation.most_common()
        },
        "creation_requests_per_job": sum(creation.values()) / n,
        "creation_capped_requests_per_job": capped / n,
        "writes_per_job_life": sum(1 for r in op_life if method(r) in WRITES) / n,
        "progress_writes_per_job_life": progress_only / n,
        "running_minutes_per_job": sum(ended[k] - ran[k] for k in ran if k in ended) / 60 / n,
        "requests_per_job_life": len(op_life) / n,
        "cpu_seconds_per_job": (m["cpu_first_operator"] + m["cpu_second"]) / n,
        "cpu_seconds_per_job_create": m["cpu_create"] / n,
        "cpu_share_steady": m["window_cpu"] / m["window_seconds"],
        **m,
    }


EMULATOR_LIMITS = (
    "The API server is the operator tests' KMock-based emulator in the benchmark's own "
    "process (Python, sharing the 2 cores with the simulated kubelet, the pods' /metrics "
    "server and the operator): no admission or validation, no etcd (writes are in memory, "
    "no fsync, no 1-2 ms commit latency), no API priority and fairness (it never answers "
    "429 by itself), no watch cache or pagination, no Job controller or kubelet (played "
    "through the API by tests/support/kube/job_play.py, one pod per job). A real API server "
    "adds admission and etcd latency to every write and would throttle a client that "
    "exceeds its flow's share; the operator's own --qps/--burst cap applies to its client "
    "(kopf's watches, finalizer patches and Events go through kopf's)."
)


def _takeover(x: dict[str, Any]) -> str:
    """The failover replica's RSS at the end and its peak, where the row has them (rows
    measured before they were kept folded that peak into rss_hwm)."""
    if "rss_hwm_takeover" not in x:
        return " (incl. the takeover replica)"
    return f" ({x['rss_takeover_end'] / 2**20:.0f} / {x['rss_hwm_takeover'] / 2**20:.0f})"


def _allocators(rows: list[dict[str, Any]]) -> str:
    """What the operator ran on (kubetune_api/allocator.py); rows measured before it was
    recorded ran on glibc's malloc with pymalloc."""
    names = {x.get("allocator", "system") for x in rows}
    text = {"jemalloc": "jemalloc, Python's objects through it too (KUBETUNE_ALLOCATOR)",
            "system": "glibc's malloc with pymalloc (the default)"}  # fmt: skip
    return "; ".join(text.get(n, n) for n in sorted(names))


def _f(x: dict[str, Any], key: str, fmt: str = ".1f") -> str:
    v = x.get(key)
    return "-" if v is None else format(v, fmt)


def _doubling(rows: list[dict[str, Any]], key: str) -> str:
    """Each step's ratio, and per doubling where the step is not one (2000 -> 5000 is 2.5x
    the jobs: its ratio to the power 1 / log2(2.5))."""

    def one(a: dict[str, Any], b: dict[str, Any]) -> str:
        ratio, times = b[key] / a[key], b["jobs"] / a["jobs"]
        text = f"{a['jobs']}->{b['jobs']} {ratio:.2f}x"
        if times != 2:
            text += f" ({ratio ** (1 / math.log2(times)):.2f}x per doubling)"
        return text

    text = ", ".join(one(a, b) for a, b in itertools.pairwise(rows) if a.get(key))
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
        f"the last row runs the smallest burst again with --qps {s['other_qps']:g} "
        f"--burst {s['other_burst']}.\n",
        f"Emulator limits: {EMULATOR_LIMITS}\n",
        f"The operator's allocator: {_allocators(r['rows'])}.\n",
        "| jobs | --qps / --burst | create->Job p50 / p99 s (p99 of: POST->first status "
        "write + that->Job) | capped requests per creation "
        "| all Running (status) after s | req/s per running job "
        "| status writes per job-minute | writes/job over its life (other + progress in its "
        "running minutes) | operator CPU s/job "
        "| RSS steady / peak MiB (the replica that took over: at the end / peak) "
        "| restart: resync s, creates, status writes (+ paced progress) "
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
            f"{x['rss_hwm'] / 2**20:.0f}{_takeover(x)} | {x['resync_seconds']:.1f}, "
            f"{x['restart_creates']}, "
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
    if len(default) == 1:
        out.append(
            f"Only {last['jobs']} jobs at this commit: larger bursts "
            "(KUBETUNE_BENCH_LIFECYCLE_SIZES=1000,2000,5000) take 15 and 40+ minutes each on the "
            "shared 2-core machine and were not run, so there is no per-doubling figure here; "
            "at the default cap the creation time is linear in N (N x requests / --qps).\n"
        )
    other = [x for x in r["rows"] if x.get("qps", 50) != s["qps"]]
    if other and default:
        a, b = sorted((default[0], other[0]), key=lambda x: x.get("qps", 50))  # low, high cap
        out.append(
            f"**The --qps trade-off.** A new job costs 4 requests of the operator's capped "
            "client (status, ConfigMap, Service, Job; tests/operator/test_operator_creation.py), "
            "but until the last Job of a burst the same budget also carries the status writes "
            "of the jobs already started (Pending, Running, paced progress): "
            f"{_f(a, 'creation_capped_requests_per_job')} capped requests per job in all. So a "
            "burst of N jobs gets its last Job after about N x that / --qps seconds, and the wait "
            "is for a creation slot (the p99 splits into "
            f"{_f(a, 'create_to_status_p99')} s before a job's first status write and "
            f"{_f(a, 'status_to_job_p99')} s from it to the Job). At --qps "
            f"{a['qps']:g} --burst {a['burst']}, {a['jobs']} "
            f"jobs: p99 {a['create_to_job_p99']:.1f} s (p50 {a['create_to_job_p50']:.1f} s: "
            f"jobs are created depth-first, 16 at a time, so the first get their Job at once). "
            f"At --qps {b['qps']:g} --burst {b['burst']}: p99 {b['create_to_job_p99']:.1f} s, "
            "where the emulator and the 2 shared cores, not the cap, set the pace. "
            f"The default is {s['qps']:g}/{s['burst']}, JobSet's: API priority and fairness "
            "protects the server (service accounts share the workload-low level, about 40% of "
            "its concurrency, fairly per client) and a 429 is retried after its Retry-After, so "
            "a cap above what the server grants is paced by the server instead of failing; a "
            "small shared API server lowers `operator.apiQPS`/`apiBurst` to 50/100 "
            "(docs/operations.md#api-request-rate).\n"
        )
    return out
