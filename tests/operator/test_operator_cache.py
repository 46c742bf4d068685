"""Fleet scale: a running job is reconciled from the watch cache (no GET per pass),
status writes are paced, and the API client honours 429 Retry-After and its QPS cap."""

from __future__ import annotations

import itertools
import threading
import time

from kubetune_api.constants import TrainerMetric
from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, api_path, run_operator, wait_for
from tests.support.kube.job_play import create_pods, set_job_status, set_running, set_terminated
from tests.support.kube.operator import NS, load_ftj, op_metric, reconciles, status
from tests.support.net import free_port

JOBS = "batch/v1/jobs"


def _reads(cluster, since: int) -> list[str]:
    """GETs (not watches) the operator sent after request number `since`."""
    return [
        f"GET {r.url.path}"
        for r in cluster.requests()[since:]
        if r.method.value == "GET"
        and r.params.get("watch") not in ("true", "1")
        and "httpx" not in r.headers.get("User-Agent", "")
    ]


def test_a_running_job_is_reconciled_from_the_watch_cache(operator):
    cluster = operator
    cluster.create(FTJ, load_ftj(metrics={"port": free_port()}))  # nothing serves it
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    for pod in create_pods(cluster, NS, "llama-lora-a1"):
        set_running(cluster, NS, pod, "127.0.0.1")  # nothing serves metrics: no progress
    wait_for(
        lambda: (
            ((cluster.get(FTJ, NS, "llama-lora") or {}).get("status") or {}).get("phase")
            == "Running"
        ),
        what="Running",
    )
    # Let the reconcile that wrote Running finish, then watch five more passes.
    done = reconciles(cluster)
    wait_for(lambda: reconciles(cluster) >= done + 1, what="a reconcile")
    since = len(cluster.requests())
    misses = op_metric(cluster, "kubetune_cache_misses_total", kind="job")
    done = reconciles(cluster)
    wait_for(lambda: reconciles(cluster) >= done + 5, what="5 reconciles")
    assert _reads(cluster, since) == []
    assert op_metric(cluster, "kubetune_cache_misses_total", kind="job") == misses
    # A new job has no accepted spec to read (its ConfigMap is created, never read back).
    assert op_metric(cluster, "kubetune_cache_misses_total", kind="configmap") == 0


def _status_patches(cluster, name: str = "llama-lora") -> list[int]:
    """Request ids of the operator's status writes of this FineTuneJob."""
    return [
        r.id
        for r in cluster.requests()
        if r.method.value == "PATCH" and r.url.path == api_path(FTJ, NS, name, "status")
    ]


def test_progress_writes_are_paced_and_a_phase_change_is_written_at_once(
    cluster,
    rank0_metrics,
):
    port, gauges = rank0_metrics
    gauges["kubetune_train_total_steps"].set(1000)
    pace = 3.0  # --status-interval
    config = OperatorConfig(reconcile_interval=0.2, status_interval=pace, metrics_port=None)
    with run_operator(cluster, [NS], config):
        cluster.create(FTJ, load_ftj(metrics={"port": port}))
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
        pods = create_pods(cluster, NS, "llama-lora-a1")
        for pod in pods:
            set_running(cluster, NS, pod, "127.0.0.1")
        wait_for(lambda: status(cluster).get("phase") == "Running", what="Running")
        # Training: a step every 0.25 s for 7 s, the loop looks every 0.2 s.
        before, t0 = len(_status_patches(cluster)), time.monotonic()
        step = 0
        while time.monotonic() - t0 < 7.0:
            step += 1
            gauges["kubetune_train_step"].set(step)
            gauges["kubetune_train_loss"].set(2.0 - step / 1000)
            time.sleep(0.25)
        writes = _status_patches(cluster)[before:]
        # One write per 3 s at most (3 in 7 s, one more if a window just opened): without
        # pacing this is one per look (~30).
        assert 1 <= len(writes) <= 4, len(writes)
        times = [cluster.emu.received[i] for i in writes]
        assert all(b - a >= pace - 0.3 for a, b in itertools.pairwise(times)), times
        # ...yet the progress is in status.
        assert 0 < status(cluster)["progress"]["step"] <= step
        # Right after a progress write, the job succeeds: written at once, not a pace later.
        n = len(_status_patches(cluster))
        wait_for(lambda: len(_status_patches(cluster)) > n, timeout=10, what="a progress write")
        gauges["kubetune_train_step"].set(1000)
        ended = time.monotonic()
        for pod in pods:
            set_terminated(cluster, NS, pod, 0)
        set_job_status(
            cluster, NS, "llama-lora-a1", conditions=[{"type": "Complete", "status": "True"}]
        )
        wait_for(lambda: status(cluster).get("phase") == "Succeeded", what="Succeeded")
        assert time.monotonic() - ended < pace - 0.5


def _operator_requests(cluster, path: str = "", method: str = "") -> list[tuple[int, float]]:
    """(id, arrival time) of our API client's requests, optionally one method and path."""
    return [
        (r.id, cluster.emu.received[r.id])
        for r in cluster.requests()
        if r.headers.get("User-Agent") == "kubetune-operator"
        and (not path or r.url.path == path)
        and (not method or r.method.value == method)
    ]


def test_a_429_is_retried_no_sooner_than_retry_after(cluster):
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None)
    jobs = api_path(JOBS, NS)
    with run_operator(cluster, [NS], config):
        # Priority and fairness rejects the Job's creation twice, asking for 2 s each time.
        fault = cluster.emu.fail("POST", jobs, 429, times=2, retry_after=2)
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), timeout=30, what="the Job")
        throttled = op_metric(cluster, "kubetune_api_throttled_total", verb="post")
        errors = op_metric(cluster, "kubetune_api_errors_total", verb="post", code="429")
    assert fault.hits == 2
    posts = _operator_requests(cluster, jobs, "POST")
    assert [cluster.emu.statuses[i] for i, _ in posts] == [429, 429, 201]
    times = [t for _, t in posts]
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(times)), times
    assert (throttled, errors) == (2, 0)  # retried inside the client, never an error


def test_requests_per_second_are_capped_with_a_burst(cluster):
    qps, burst = 4.0, 3
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None, api_qps=qps, api_burst=burst)
    with run_operator(cluster, [NS], config):
        for i in range(5):  # each job's creation is ~4 requests of our client
            doc = load_ftj()
            doc["metadata"]["name"] = f"job-{i}"
            cluster.create(FTJ, doc)
        for i in range(5):
            wait_for(lambda i=i: cluster.get(JOBS, NS, f"job-{i}-a1"), timeout=30, what="Jobs")
        waited = op_metric(cluster, "kubetune_api_client_wait_seconds_total")
    times = [t for _, t in _operator_requests(cluster)]
    assert len(times) >= 20
    # Any run of requests fits the bucket: `burst` at once, then `qps` per second.
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= burst + qps * (times[j] - times[i]) + 1, (i, j)
    assert waited > 0


def test_progress_writes_stretch_to_a_share_of_the_qps_with_many_running_jobs(
    cluster, rank0_metrics
):
    """With more running jobs than --qps can write every --status-interval, each job's
    progress is written less often (pacing.progress_interval): here 2 running jobs at
    --qps 2, so half of it (1 write/s) for 2 jobs is one write per job every 2 s, not 0.5 s."""
    port, gauges = rank0_metrics
    gauges[TrainerMetric.TOTAL_STEPS].set(10**6)
    config = OperatorConfig(
        reconcile_interval=0.1, status_interval=0.5, metrics_port=None, api_qps=2, api_burst=4
    )
    names = ("llama-lora", "other")
    stop = threading.Event()

    def train() -> None:  # a step every 0.05 s: progress changes at every look
        while not stop.wait(0.05):
            gauges[TrainerMetric.STEP].inc()

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    try:
        with run_operator(cluster, [NS], config):
            for name in names:
                doc = load_ftj(metrics={"port": port}, distributed={"nodes": 1})
                doc["metadata"]["name"] = name
                cluster.create(FTJ, doc)
            for name in names:
                wait_for(lambda n=name: cluster.get(JOBS, NS, f"{n}-a1"), what=f"{name}'s Job")
                for pod in create_pods(cluster, NS, f"{name}-a1"):
                    set_running(cluster, NS, pod, "127.0.0.1")
            for name in names:
                wait_for(
                    lambda n=name: status(cluster, n).get("phase") == "Running", what="Running"
                )
            since = len(cluster.requests())
            wait_for(
                lambda: all(len(_progress_since(cluster, n, since)) >= 4 for n in names),
                timeout=40,
                what="4 progress writes of each job",
            )
    finally:
        stop.set()
        trainer.join()
    for name in names:
        times = _progress_since(cluster, name, since)
        # >= 2 s apart (the stretched interval), where --status-interval alone allows 0.5 s.
        assert all(b - a >= 2.0 - 0.3 for a, b in itertools.pairwise(times)), (name, times)


def _progress_since(cluster, name: str, since: int) -> list[float]:
    """Arrival times of our progress-only status writes of one job after request `since`."""
    return [
        cluster.emu.received[r.id]
        for r in cluster.requests()[since:]
        if r.method.value == "PATCH"
        and r.url.path == api_path(FTJ, NS, name, "status")
        and set((r.data or {}).get("status") or {}) == {"progress"}
    ]
