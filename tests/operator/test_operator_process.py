"""`python -m kubetune_operator` as a real process, and RBAC checked against real traffic.

The RBAC test replays a whole lifecycle (leader Lease, create, run, retryable failure,
attempt 2, success, TTL deletion through the finalizer) in namespaced and cluster-wide
mode and maps every request the operator made (kopf's and ours, told apart from the
test's own client by User-Agent) to what the authorizer checks: each must be allowed by
kubetune_operator.rbac (which the Helm chart is tested against), and every rule there
must have been used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kubetune_api import allocator
from kubetune_operator import rbac
from kubetune_operator.config import OperatorConfig
from kubetune_operator.leader import LeaseConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import create_pods, set_job_status, set_running, set_terminated
from tests.support.kube.operator import LEASE_NS, NS, load_ftj, status
from tests.support.net import free_port


def verb_of(method: str, name: str | None, params: dict) -> str:
    if method == "GET":
        return "watch" if params.get("watch") in ("true", "1") else ("get" if name else "list")
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PATCH": "patch", "PUT": "update"}[method]


Access = tuple[str, str, str, bool]  # apiGroup, resource, verb, in a namespace


def operator_access(cluster: EmulatorServer) -> set[Access]:
    """What the authorizer is asked for the operator's requests (kopf's and ours; the
    test's own client is python-httpx), including the admission plugin
    OwnerReferencesPermissionEnforcement: setting blockOwnerDeletion on a reference
    needs `update` on the owner's `finalizers` subresource."""
    kinds = {(i.api_version, i.kind): i for i in cluster.emu.kinds.values()}
    used: set[Access] = set()
    for r in cluster.requests():
        agent = r.headers.get("User-Agent", "")
        if r.resource is None or not r.resource.plural or agent.startswith("python-httpx"):
            continue  # discovery (non-resource URLs, granted to everyone) or the test
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        verb = verb_of(r.method.value, r.name, r.params)
        used.add((r.resource.group, resource, verb, r.namespace is not None))
        if agent == "kubetune-operator":  # our client authenticates like kopf does
            assert r.headers["Authorization"] == "Bearer emulator-token"
        data = r.data if isinstance(r.data, dict) else {}  # kopf's JSON patches are lists
        refs = (data.get("metadata") or {}).get("ownerReferences") or []
        if verb in ("create", "update", "patch"):
            for ref in refs:
                if ref.get("blockOwnerDeletion"):
                    owner = kinds[ref["apiVersion"], ref["kind"]]
                    used.add((owner.group, f"{owner.plural}/finalizers", "update", True))
    return used


def full_lifecycle(cluster: EmulatorServer) -> None:
    """Create (with URL credentials), run, a retryable failure, attempt 2 (ConfigMap exists:
    409), success, TTL:
    the operator deletes the FineTuneJob, its finalizer removes the children."""
    # A password in the tracking URL: the operator creates the job's credentials Secret.
    tracking = {"mlflowUri": "http://kubetune:pw@mlflow.ml.svc:5000"}
    cluster.create(FTJ, load_ftj(runPolicy={"ttlSecondsAfterFinished": 0}, tracking=tracking))
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="attempt 1")
    pods = create_pods(cluster, NS, "llama-lora-a1")
    set_running(cluster, NS, pods[0], "127.0.0.1")
    wait_for(lambda: status(cluster).get("phase") == "Running")
    set_terminated(cluster, NS, pods[0], 75)
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a2"), what="attempt 2")
    pods = create_pods(cluster, NS, "llama-lora-a2")
    for pod in pods:
        set_terminated(cluster, NS, pod, 0, {"message": "done"})
    set_job_status(
        cluster, NS, "llama-lora-a2", conditions=[{"type": "Complete", "status": "True"}]
    )
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the TTL deletion")


# Granted but never requested in the lifecycle. (Every other rule, including the Lease, the
# TTL's `finetunejobs delete` and the finalizers `update` checked on blockOwnerDeletion,
# is exercised above; add an entry here only with a comment saying why it is needed.)
EXTRAS: set[tuple[str, str, str]] = {
    # A running job is reconciled from the watch cache (cache.py): the FineTuneJob is read
    # only when the cache cannot answer, after a refused child (test_operator_children).
    ("kubetune.io", "finetunejobs", "get"),
}


@pytest.mark.parametrize("clusterwide", [False, True], ids=["namespaced", "cluster-wide"])
def test_rbac_is_exactly_what_a_lifecycle_uses(cluster: EmulatorServer, clusterwide: bool):
    from tests.support.kube.cluster import run_operator

    namespaces = None if clusterwide else [NS]
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None, network_policy=True)
    # Short timings: the lease is renewed (PUT) within the lifecycle, and released at the end.
    lease = LeaseConfig("kubetune", LEASE_NS, duration=2, renew_deadline=1, retry_period=0.2)
    with run_operator(cluster, namespaces, config, lease=lease):
        full_lifecycle(cluster)
    used = operator_access(cluster)
    # 1. Every request is allowed: a namespaced one by the Role or the ClusterRole, a
    # cluster-scoped (or all-namespaces) one only by the ClusterRole.
    denied = {u for u in used if not rbac.allows(*u[:3], clusterwide=clusterwide, namespaced=u[3])}
    assert not denied, f"requests not covered by rbac.py: {sorted(denied)}"
    # 2. Every granted rule is used: nothing stale, nothing "just in case".
    granted = {
        (g, r, v)
        for kind in rbac.rules(clusterwide).values()
        for g, r, verbs in kind
        for v in verbs
    }
    unused = granted - {u[:3] for u in used} - EXTRAS
    assert not unused, f"granted by rbac.py but never used: {sorted(unused)}"
    # Pods are read-only; the children and the TTL deletion came from the operator itself.
    assert not {u for u in used if u[1] == "pods" and u[2] not in ("list", "watch")}
    assert ("kubetune.io", "finetunejobs", "delete", True) in used


def test_module_entry_point_serves_health_metrics_and_reconciles(cluster: EmulatorServer):
    metrics, health = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    # The opt-in allocator where it is installed (make test installs libjemalloc2).
    jemalloc = bool(allocator.library() or os.environ.get("CI"))
    if jemalloc:
        env[allocator.ENV] = "jemalloc"
    cmd = [
        sys.executable,
        "-m",
        "kubetune_operator",
        "--namespace",
        NS,
        "--bind",
        "127.0.0.1",
        "--metrics-port",
        str(metrics),
        "--liveness-port",
        str(health),
        "--reconcile-interval",
        "0.5",
    ]
    log = cluster.workdir / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def get(port: int, path: str) -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
            except httpx.HTTPError:
                return None

        wait_for(
            lambda: (r := get(health, "/healthz")) is not None and r.status_code == 200,
            timeout=30,
            what=f"/healthz\n{log.read_text()[-2000:]}",
        )
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")
        text = wait_for(
            lambda: (r := get(metrics, "/metrics")) and 'phase="Pending"} 1.0' in r.text and r.text,
            what="operator metrics",
        )
        assert "kubetune_reconcile_seconds_bucket" in text
        # Re-executed in place onto jemalloc (the PID is the one started), Python's objects
        # through it too.
        if jemalloc:
            assert allocator.in_use(f"/proc/{proc.pid}/maps") == "jemalloc"
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
            assert b"PYTHONMALLOC=malloc" in environ
            assert "memory allocator: jemalloc" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    # The scheduler stops in the cleanup handler: kopf has nothing of ours to cancel.
    assert "cancelled" not in log.read_text()


def test_rotated_credentials_are_picked_up_without_a_restart(operator):
    cluster = operator
    cluster.emu.tokens = {"emulator-token"}  # the emulator now checks bearer tokens
    cluster.create(FTJ, load_ftj())
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="attempt 1")
    # The token rotates: the old one is refused from now on, the kubeconfig has the new one.
    cluster.write_kubeconfig("rotated-token")
    cluster.emu.tokens = {"rotated-token"}
    rotated_at = len(cluster.requests())
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"suspend": True}}})
    wait_for(lambda: status(cluster).get("phase") == "Suspended", what="Suspended")
    # The status is written before the attempt's Job is deleted (reconcile._execute).
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1") is None, what="Job gone")
    after = cluster.requests()[rotated_at:]
    ours = [r for r in after if r.headers.get("User-Agent") == "kubetune-operator"]
    refused = [
        i for i, r in enumerate(ours) if r.headers["Authorization"] == "Bearer emulator-token"
    ]
    assert refused, "the operator never used the old token after the rotation"
    first = ours[refused[0]]
    retry = ours[refused[0] + 1]  # the same call again, after reading the new token
    assert (retry.method, retry.url.path) == (first.method, first.url.path)
    assert retry.headers["Authorization"] == "Bearer rotated-token"
    assert all(
        r.headers["Authorization"] == "Bearer rotated-token" for r in ours[refused[-1] + 1 :]
    )
