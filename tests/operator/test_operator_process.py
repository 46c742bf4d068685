"""`python -m kubetune_operator` as a real process, and RBAC checked against real traffic.

The RBAC test replays a whole lifecycle (create, run, retryable failure, attempt 2,
delete) and maps every request the operator made (kopf's and ours, told apart from the
test's own client by User-Agent) to (apiGroup, resource, verb): each must be allowed
by kubetune_operator.rbac, which the Helm chart is tested against.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys

import httpx
from job_play import create_pods, set_running, set_terminated
from kube_cluster import FTJ, EmulatorServer, wait_for
from op_support import NS, load_ftj
from test_operator_lifecycle import status

from kubetune_operator import rbac


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verb_of(method: str, name: str | None, params: dict) -> str:
    if method == "GET":
        return "watch" if params.get("watch") == "true" else ("get" if name else "list")
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PATCH": "patch", "PUT": "update"}[method]


def test_rbac_covers_every_request_of_a_lifecycle(operator):
    cluster = operator
    cluster.create(FTJ, load_ftj())
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="attempt 1")
    pods = create_pods(cluster, NS, "llama-lora-a1")
    set_running(cluster, NS, pods[0], "127.0.0.1")
    wait_for(lambda: status(cluster).get("phase") == "Running")
    set_terminated(cluster, NS, pods[0], 75)
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a2"), what="attempt 2")
    cluster.delete(FTJ, NS, "llama-lora")
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="deletion")

    used: set[tuple[str, str, str]] = set()
    for r in cluster.requests():
        agent = r.headers.get("User-Agent", "")
        if r.resource is None or not r.resource.plural or agent.startswith("python-httpx"):
            continue
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        used.add((r.resource.group, resource, verb_of(r.method.value, r.name, r.params)))
        if agent == "kubetune-operator":  # our client authenticates like kopf does
            assert r.headers["Authorization"] == "Bearer emulator-token"
    denied = {u for u in used if not rbac.allows(*u, clusterwide=False)}
    assert not denied, f"requests not covered by rbac.py: {sorted(denied)}"
    # And the core of the list is really exercised (no stale rules for our own resources).
    for rule in [
        ("batch", "jobs", "create"),
        ("kubetune.io", "finetunejobs/status", "patch"),
        ("", "pods", "deletecollection"),
        ("", "events", "create"),
        ("", "pods", "watch"),
        ("", "namespaces", "watch"),
    ]:
        assert rule in used, rule


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


def peering_crd() -> dict:
    """kopf's own KopfPeering CRD (what the chart installs for HA)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "kopfpeerings.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": "Namespaced",
            "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
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
