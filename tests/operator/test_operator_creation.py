"""What a new FineTuneJob costs under the --qps cap, and in which order a burst is served:
the real operator against the API emulator, counting requests on the emulator's log."""

from __future__ import annotations

import threading

from kubetune_api.constants import TrainerMetric
from kubetune_operator.config import OperatorConfig
from kubetune_operator.handlers.setup import CHILD_LABELS
from kubetune_operator.handlers.view import CREATING_AT_ONCE
from kubetune_operator.k8s import selector_text
from tests.support.kube.cluster import FTJ, run_operator, wait_for
from tests.support.kube.operator import NS, load_ftj, op_metric, operator_posts, start_attempt

JOBS = "batch/v1/jobs"


def _ours(cluster) -> list[tuple[str, str]]:
    """(method, path) of our capped client's requests, the informers' (their start-up LISTs
    of our Jobs and pods, their watches) left out."""
    return [
        (r.method.value, r.url.path)
        for r in cluster.requests()
        if r.headers.get("User-Agent") == "kubetune-operator"
        and r.params.get("watch") not in ("true", "1")
        and r.params.get("labelSelector") != selector_text(CHILD_LABELS)
    ]


def test_a_new_job_costs_its_status_and_three_creates(cluster):
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None)
    with run_operator(cluster, [NS], config):
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
        sent = _ours(cluster)
    until_job = sent[: next(i for i, (m, p) in enumerate(sent) if p.endswith("/jobs")) + 1]
    # No read before the Job: no ConfigMap read (a new job has none), no look for foreign
    # objects by name (a create's 409 says so), no list of earlier attempts (there are none).
    assert [m for m, _ in until_job] == ["PATCH", "POST", "POST", "POST"], until_job
    assert until_job[0][1].endswith("/finetunejobs/llama-lora/status")
    assert [p.rsplit("/", 1)[1] for _, p in until_job[1:]] == ["configmaps", "services", "jobs"]


def test_a_single_node_job_has_no_service(cluster):
    # One node's ranks meet on 127.0.0.1: no headless Service, one capped request less.
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None)
    with run_operator(cluster, [NS], config):
        # A foreign Service with the attempt's name is no conflict: the job has none.
        svc = {"metadata": {"name": "llama-lora-a1", "namespace": NS}, "spec": {"ports": []}}
        cluster.create("v1/services", svc)
        cluster.create(FTJ, load_ftj(distributed={"nodes": 1}))
        job = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
        sent = _ours(cluster)
        assert not [p for m, p in sent if p.endswith("/services") or "/services/" in p], sent
    until_job = sent[: next(i for i, (m, p) in enumerate(sent) if p.endswith("/jobs")) + 1]
    assert [(m, p.rsplit("/", 1)[1]) for m, p in until_job] == [
        ("PATCH", "status"), ("POST", "configmaps"), ("POST", "jobs"),
    ]  # fmt: skip
    assert "subdomain" not in job["spec"]["template"]["spec"]
    assert (
        cluster.get("v1/services", NS, "llama-lora-a1")["metadata"].get("ownerReferences") is None
    )
    assert not operator_posts(cluster, "services")


def test_a_burst_is_created_depth_first(cluster):
    # A slow cap, so the order is the cap's: each request waits for its token.
    config = OperatorConfig(reconcile_interval=5, metrics_port=None, api_qps=40, api_burst=1)
    n = 2 * CREATING_AT_ONCE + 8
    with run_operator(cluster, [NS], config):
        for i in range(n):
            doc = load_ftj()
            doc["metadata"]["name"] = f"job-{i}"
            cluster.create(FTJ, doc)
        wait_for(lambda: len(cluster.list(JOBS, NS)) == n, timeout=60, what="every Job")
        sent = _ours(cluster)
    first_job = next(i for i, (_, p) in enumerate(sent) if p.endswith("/jobs"))
    begun = sum(1 for m, p in sent[:first_job] if m == "PATCH" and p.endswith("/status"))
    # Breadth first, every job's status write would come before the first Job (n of them).
    assert begun <= CREATING_AT_ONCE, (begun, sent[: first_job + 1])


def _progress_writes(cluster, name: str) -> list[int]:
    """Indexes (in the emulator's log) of our progress-only status writes of one job."""
    return [
        i
        for i, r in enumerate(cluster.requests())
        if r.method.value == "PATCH"
        and r.url.path.endswith(f"/finetunejobs/{name}/status")
        and set((r.data or {}).get("status") or {}) == {"progress"}
    ]


def test_progress_writes_give_way_to_a_burst_of_creations(cluster, rank0_metrics):
    # A running job whose step advances all along, status written as often as allowed, and
    # a slow cap: every progress write taken during the burst would delay a new job's Job.
    port, gauges = rank0_metrics
    gauges[TrainerMetric.TOTAL_STEPS].set(10**6)
    config = OperatorConfig(
        reconcile_interval=0.2, status_interval=0.2, metrics_port=None, api_qps=10, api_burst=1
    )
    stop = threading.Event()

    def train() -> None:
        while not stop.wait(0.05):
            gauges[TrainerMetric.STEP].inc()

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    n = 12
    try:
        with run_operator(cluster, [NS], config):
            start_attempt(cluster, metrics={"port": port})
            wait_for(lambda: len(_progress_writes(cluster, "llama-lora")) >= 2, what="progress")
            for i in range(n):
                doc = load_ftj(distributed={"nodes": 1})
                doc["metadata"]["name"] = f"new-{i}"
                cluster.create(FTJ, doc)
            wait_for(lambda: len(cluster.list(JOBS, NS)) == n + 1, timeout=60, what="every Job")
            burst_end = len(cluster.requests())
            # Deferred, not lost: the running job's progress is written again afterwards.
            wait_for(
                lambda: _progress_writes(cluster, "llama-lora")[-1] > burst_end,
                what="a progress write after the burst",
            )
            sent = cluster.requests()
            deferred = op_metric(cluster, "kubetune_api_deferred_total")
    finally:
        stop.set()
        trainer.join()
    windows = []  # each new job's creation in the log: its status write .. its Job's POST
    for i in range(n):
        first = next(
            k for k, r in enumerate(sent)
            if r.method.value == "PATCH" and r.url.path.endswith(f"/finetunejobs/new-{i}/status")
        )  # fmt: skip
        job = next(
            k for k, r in enumerate(sent)
            if r.method.value == "POST" and r.url.path.endswith("/jobs")
            and ((r.data or {}).get("metadata") or {}).get("name") == f"new-{i}-a1"
        )  # fmt: skip
        windows.append((first, job))
    during = [
        k for k in _progress_writes(cluster, "llama-lora") if any(a < k < b for a, b in windows)
    ]
    assert not during, (during, windows)
    assert deferred > 0  # the held-back writes are counted (kubetune_api_deferred_total)
