"""Fleet scale: a running job is reconciled from the watch cache (no GET per pass),
status writes are paced, and the API client honours 429 Retry-After and its QPS cap."""

from __future__ import annotations

from job_play import create_pods, set_running
from kube_cluster import FTJ, wait_for
from op_support import NS, load_ftj, op_metric, reconciles

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
    cluster.create(FTJ, load_ftj())
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
    # The one read a job costs the operator: its accepted spec, once, at its first look.
    assert op_metric(cluster, "kubetune_cache_misses_total", kind="configmap") == 1
