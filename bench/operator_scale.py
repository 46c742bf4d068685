"""Operator scale: N FineTuneJobs created at once in the API emulator.

    python bench/operator_scale.py [--quick] [--sizes 100,500,1000]

For each N, a fresh emulator (the operator tests' KMock-based API server, in this process
on a free 127.0.0.1 port) and a fresh operator subprocess (`python -m kubetune_operator
--namespace bench --standalone`, logged in through the emulator's kubeconfig), so its RSS
is its own. The benchmark POSTs N FineTuneJobs (tests/operator/ftj-basic.yaml, renamed),
then watches the emulator's object store until every FineTuneJob has its Job.

Figures: seconds from the first POST to the last Job; the operator's requests and writes
(POST/PUT/PATCH/DELETE) per job from the emulator's request log (the benchmark's own
requests, made with httpx, are left out); operator RSS sampled every 0.2 s and its
VmHWM. Requests keep coming after the last Job (status, events, the reconcile loop): the
counts are taken after a settle period of a few seconds and both are reported.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import OPERATOR_TESTS, PY, ROOT, hwm_bytes, loadavg, rss_bytes, say

NS = "bench"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _emulator() -> Any:
    from tests.support.kube import cluster  # common.py put the repository on sys.path

    return cluster


def _manifest(i: int) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load((OPERATOR_TESTS / "ftj-basic.yaml").read_text())
    doc["metadata"] = {"name": f"job-{i:05d}", "namespace": NS}
    return doc


def _count_jobs(emu: Any) -> int:
    for _ in range(20):  # the emulator's loop may resize the dict while we read it
        try:
            return sum(
                1
                for (res, ns, _n), obj in list(emu.objects.items())
                if res.plural == "jobs" and res.group == "batch" and ns == NS and not obj.deleted
            )
        except RuntimeError:
            time.sleep(0.01)
    return 0


@contextlib.contextmanager
def operator_process(kubeconfig: Path, log: Path, interval: float) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    cmd = [
        PY,
        "-m",
        "kubetune_operator",
        "--namespace",
        NS,
        "--standalone",
        "--metrics-port",
        "0",
        "--liveness-port",
        "0",
        "--reconcile-interval",
        str(interval),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        yield proc
    finally:
        proc.terminate()  # kopf stops on SIGTERM; only the process we started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _is_ours(req: Any) -> bool:
    return "httpx" in str(req.headers.get("User-Agent", ""))


def _key(req: Any) -> str:
    res = req.resource
    plural = res.plural if res is not None else "-"
    sub = f"/{req.subresource}" if req.subresource else ""
    watch = " watch" if req.params.get("watch") in ("true", "1") else ""
    return f"{str(req.method.value).upper()} {plural}{sub}{watch}"


def one_size(n: int, settle: float, interval: float) -> dict[str, Any]:
    kc = _emulator()
    with (
        tempfile.TemporaryDirectory(prefix="kt-opbench-") as tmp,
        kc.EmulatorServer(Path(tmp)) as cluster,
    ):
        cluster.apply_crd()
        cluster.create_namespace(NS)
        manifests = [_manifest(i) for i in range(n)]
        with operator_process(cluster.kubeconfig, Path(tmp) / "operator.log", interval) as proc:
            # Ready = the operator is watching FineTuneJobs (its first watch request).
            deadline = time.monotonic() + 120
            while not any(
                not _is_ours(r) and _key(r).startswith("GET finetunejobs") and "watch" in _key(r)
                for r in cluster.requests()
            ):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((Path(tmp) / "operator.log").read_text()[-3000:])
                time.sleep(0.1)
            time.sleep(1.0)  # the other watches (Jobs, Pods) start in the same breath
            start_index = len(cluster.requests())
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    with contextlib.suppress(OSError):
                        samples.append(rss_bytes(proc.pid))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            for m in manifests:
                cluster.create("kubetune.io/v1alpha1/finetunejobs", m, NS)
            created = time.monotonic() - t0
            timeout = max(120.0, n * 0.5)
            while (done := _count_jobs(cluster.emu)) < n:
                if proc.poll() is not None:
                    raise RuntimeError(f"the operator exited with {proc.returncode}")
                if time.monotonic() - t0 > timeout:
                    break  # reported as such: how many had their Job when time ran out
                time.sleep(0.25)
            all_jobs = time.monotonic() - t0
            at_jobs = len(cluster.requests())
            load_at_jobs = loadavg()
            time.sleep(settle)
            stop.set()
            sampler.join()
            hwm = hwm_bytes(proc.pid)
            reqs = [r for r in cluster.requests()[start_index:] if not _is_ours(r)]
            at_jobs_reqs = [r for r in cluster.requests()[start_index:at_jobs] if not _is_ours(r)]
    by_kind = collections.Counter(_key(r) for r in reqs)
    writes = [r for r in reqs if str(r.method.value).upper() in WRITES]
    return {
        "jobs": n,
        "jobs_with_job": done,
        "timed_out": done < n,
        "create_seconds": created,
        "all_jobs_seconds": all_jobs,
        "jobs_per_second": n / all_jobs,
        "requests": len(reqs),
        "writes": len(writes),
        "requests_per_job": len(reqs) / n,
        "writes_per_job": len(writes) / n,
        "writes_per_job_at_last_job": sum(
            1 for r in at_jobs_reqs if str(r.method.value).upper() in WRITES
        )
        / n,
        "by_kind_per_job": {k: round(v / n, 3) for k, v in by_kind.most_common()},
        "rss_max_sampled": max(samples) if samples else 0,
        "rss_hwm": hwm,
        "rss_start": samples[0] if samples else 0,
        "settle_seconds": settle,
        "load_at_jobs": load_at_jobs,
        "load_end": loadavg(),
    }


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([20] if quick else [100, 500, 1000])
    rows = []
    for n in sizes:
        r = one_size(n, settle=3.0 if quick else 10.0, interval=10.0)
        rows.append(r)
        say(
            f"operator {n} jobs: all Jobs in {r['all_jobs_seconds']:.1f} s, "
            f"{r['writes_per_job']:.2f} writes/job, RSS {r['rss_hwm'] / 2**20:.0f} MiB"
        )
    return {
        "quick": quick,
        "rows": rows,
        "targets": {"seconds_1000": 60, "writes_per_job": 6, "rss_mb": 200},
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes")
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else None
    print(json.dumps(run(a.quick, sizes)["rows"], indent=1))


if __name__ == "__main__":
    main()
