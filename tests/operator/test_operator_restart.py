"""An operator restart with running jobs: the new operator reads the world from its watches
and writes nothing when nothing changed (no status rewrite, no create), through the real
operator against the API emulator, counting requests on the emulator's log."""

from __future__ import annotations

import time

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, run_operator, wait_for
from tests.support.kube.job_play import create_pods, set_running
from tests.support.kube.operator import NS, load_ftj, reconciles, status

JOBS = "batch/v1/jobs"
NAMES = ("job-0", "job-1", "job-2")


def _ours(cluster, since: int) -> list[str]:
    """Our API client's requests after request number `since`, reads and watches left out."""
    return [
        f"{r.method.value} {r.url.path} {r.data}"
        for r in cluster.requests()[since:]
        if r.headers.get("User-Agent") == "kubetune-operator" and r.method.value != "GET"
    ]


def test_a_restart_with_running_jobs_writes_nothing_when_nothing_changed(
    cluster,
    rank0_metrics,
):
    port, gauges = rank0_metrics
    gauges["kubetune_train_total_steps"].set(1000)
    gauges["kubetune_train_step"].set(100)
    gauges["kubetune_train_loss"].set(1.5)
    # Progress is written at once here (status interval 0): a restart that recomputed any
    # of it differently (the ETA, unknown until the new operator has seen steps advance; a
    # timestamp; a condition) would show as a write.
    config = OperatorConfig(reconcile_interval=0.2, status_interval=0.0, metrics_port=None)
    with run_operator(cluster, [NS], config):
        for name in NAMES:
            doc = load_ftj(metrics={"port": port})
            doc["metadata"]["name"] = name
            cluster.create(FTJ, doc)
        for name in NAMES:
            job = wait_for(lambda n=name: cluster.get(JOBS, NS, f"{n}-a1"), what="the Job")
            for pod in create_pods(cluster, NS, job["metadata"]["name"]):
                set_running(cluster, NS, pod, "127.0.0.1")
        # Training advances (so each job's status gets an ETA from the step rate), then
        # holds at step 120: from here on, nothing changes.
        for step in range(100, 121):
            gauges["kubetune_train_step"].set(step)
            time.sleep(0.1)
        for name in NAMES:
            wait_for(
                lambda n=name: (
                    (p := status(cluster, n).get("progress") or {}).get("step") == 120
                    and p.get("etaSeconds")
                ),
                what=f"{name} Running with its progress and ETA written",
            )
        # The first operator settles: several looks per job without a write.
        done = reconciles(cluster)
        wait_for(lambda: reconciles(cluster) >= done + 3 * len(NAMES), what="looks")
    before = {n: status(cluster, n) for n in NAMES}
    assert all(st["phase"] == "Running" for st in before.values()), before
    since = len(cluster.requests())
    with run_operator(cluster, [NS], config):
        # Every job looked at several times by the new operator (scraped each time).
        wait_for(lambda: reconciles(cluster) >= 5 * len(NAMES), what="the new operator's looks")
        writes = _ours(cluster, since)
    assert writes == [], writes
    assert {n: status(cluster, n) for n in NAMES} == before
    # Every job's accepted spec came from one paginated LIST of the namespace's spec
    # ConfigMaps (listing.py), not a GET per job.
    reads = [
        (r.url.path, dict(r.url.query))
        for r in cluster.requests()[since:]
        if r.headers.get("User-Agent") == "kubetune-operator"
        and r.method.value == "GET"
        and "/configmaps" in r.url.path
    ]
    path = f"/api/v1/namespaces/{NS}/configmaps"
    assert [q.get("limit") for p, q in reads if p == path] == ["500"], reads
    assert not [p for p, _ in reads if p != path], reads
    # kopf's own start-up LISTs of the jobs and their children come in pages too
    # (handlers/setup.py: LIST_PAGE), not as one response holding every object.
    lists = [
        dict(r.url.query)
        for r in cluster.requests()[since:]
        if r.method.value == "GET"
        and r.url.path.endswith(("/finetunejobs", "/jobs", "/pods"))
        and "watch" not in dict(r.url.query)
    ]
    assert len(lists) >= 3 and all(q.get("limit") == "500" for q in lists), lists
