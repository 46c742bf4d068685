"""`python -m kubetune_operator` as a real process, and RBAC checked against real traffic.

The RBAC test replays a whole lifecycle (peering, create, run, retryable failure,
attempt 2, success, TTL deletion through the finalizer) in namespaced and cluster-wide
mode and maps every request the operator made (kopf's and ours, told apart from the
test's own client by User-Agent) to what the authorizer checks: each must be allowed by
kubetune_operator.rbac (which the Helm chart is tested against), and every rule there
must have been used.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from job_play import create_pods, set_job_status, set_running, set_terminated
from kube_cluster import FTJ, EmulatorServer, wait_for
from op_support import NS, load_ftj
from test_operator_lifecycle import status

from kubetune_operator import rbac
from kubetune_operator.config import OperatorConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def install_peering(cluster: EmulatorServer, namespaces: list[str] | None) -> None:
    """kopf's peering CRDs and the peering object(s) the chart creates for the mode."""
    for clusterwide in (False, True):
        crd = peering_crd(clusterwide)
        cluster.create("apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    if namespaces is None:
        cluster.create("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": "kubetune"}})
    for ns in namespaces or []:
        cluster.create("kopf.dev/v1/kopfpeerings", {"metadata": {"name": "kubetune"}}, ns)


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


# Granted but never requested in the lifecycle: none. (Every rule, including peering, the
# TTL's `finetunejobs delete` and the finalizers `update` checked on blockOwnerDeletion,
# is exercised above; add an entry here only with a comment saying why it is needed.)
EXTRAS: set[tuple[str, str, str]] = set()


@pytest.mark.parametrize("clusterwide", [False, True], ids=["namespaced", "cluster-wide"])
def test_rbac_is_exactly_what_a_lifecycle_uses(cluster: EmulatorServer, clusterwide: bool):
    from kube_cluster import run_operator

    namespaces = None if clusterwide else [NS]
    install_peering(cluster, namespaces)
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None)
    with run_operator(cluster, namespaces, config, peering=True):
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
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    # The follow loops stop on kopf's flag at once: no daemon needed cancelling.
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
    assert cluster.get("batch/v1/jobs", NS, "llama-lora-a1") is None
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


def peering_crd(clusterwide: bool = False) -> dict:
    """kopf's own KopfPeering (or ClusterKopfPeering) CRD: what the chart installs for HA."""
    kind = "ClusterKopfPeering" if clusterwide else "KopfPeering"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.lower()}s.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": "Cluster" if clusterwide else "Namespaced",
            "names": {"kind": kind, "plural": f"{kind.lower()}s", "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def test_peering_heartbeats_in_the_kubetune_peering_object(cluster):
    from kube_cluster import run_operator

    cluster.create("apiextensions.k8s.io/v1/customresourcedefinitions", peering_crd())
    cluster.create("kopf.dev/v1/kopfpeerings", {"metadata": {"name": "kubetune"}}, NS)
    with run_operator(cluster, [NS], peering=True, priority=10):
        peering = wait_for(
            lambda: (cluster.get("kopf.dev/v1/kopfpeerings", NS, "kubetune") or {}).get("status"),
            what="a peering heartbeat",
        )
        (peer,) = peering.values()
        assert peer["priority"] == 10
        cluster.create(FTJ, load_ftj())  # the only (so active) replica does the work
        wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")


def test_two_replicas_one_active(cluster, caplog):
    """HA: the replica with the lower peering priority pauses; one Job is created."""
    from kube_cluster import run_operator

    caplog.set_level(logging.INFO, logger="kopf")
    cluster.create("apiextensions.k8s.io/v1/customresourcedefinitions", peering_crd())
    cluster.create("kopf.dev/v1/kopfpeerings", {"metadata": {"name": "kubetune"}}, NS)
    with (
        run_operator(cluster, [NS], peering=True, priority=20),
        run_operator(cluster, [NS], peering=True, priority=10),
    ):
        peers = lambda: (cluster.get("kopf.dev/v1/kopfpeerings", NS, "kubetune") or {}).get(  # noqa: E731
            "status", {}
        )
        wait_for(lambda: len(peers()) == 2, what="two peers")
        wait_for(lambda: "Pausing operations in favour of" in caplog.text, what="a pause")
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: status(cluster).get("jobName"), what="the Job")
    posts = [
        r for r in cluster.requests() if r.method.value == "POST" and r.url.path.endswith("/jobs")
    ]
    assert len(posts) == 1
