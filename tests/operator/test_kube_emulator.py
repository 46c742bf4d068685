"""The emulator layer itself: the API-server semantics KMock 0.8 lacks and the operator needs."""

from __future__ import annotations

import json

from tests.support.kube.cluster import FTJ, EmulatorServer, api_path
from tests.support.kube.operator import load_ftj

CM = "v1/configmaps"


def watch(cluster: EmulatorServer, res: str, ns: str | None, **params: str) -> list[dict]:
    """All events of a watch that the server ends after 1 s."""
    params = {"watch": "true", "timeoutSeconds": "1", **params}
    with cluster.http.stream("GET", api_path(res, ns), params=params) as resp:  # type: ignore[union-attr]
        return [json.loads(line) for line in resp.iter_lines() if line.strip()]


def test_metadata_versions_and_conflicts(cluster):
    a = cluster.create(CM, {"metadata": {"name": "a"}, "data": {"k": "1"}}, "ns")
    meta = a["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert meta["namespace"] == "ns" and a["kind"] == "ConfigMap" and a["apiVersion"] == "v1"
    dup = cluster.call("POST", api_path(CM, "ns"), {"metadata": {"name": "a"}})
    assert dup.status_code == 409 and dup.json()["reason"] == "AlreadyExists"
    b = cluster.patch(CM, "ns", "a", {"data": {"k": "2"}})
    assert int(b["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    listing = cluster.call("GET", api_path(CM, "ns")).json()
    assert listing["kind"] == "ConfigMapList"
    assert listing["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    stale = cluster.call("PUT", api_path(CM, "ns", "a"), {**a, "data": {"k": "3"}})
    assert stale.status_code == 409
    fresh = cluster.call("PUT", api_path(CM, "ns", "a"), {**b, "data": {"k": "3"}})
    assert fresh.status_code == 200 and fresh.json()["data"] == {"k": "3"}
    test_op = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/data/k", "value": "4"},
    ]
    resp = cluster.call(
        "PATCH",
        api_path(CM, "ns", "a"),
        test_op,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert resp.status_code == 422


def test_status_subresource_isolation_and_generation(cluster):
    ftj = cluster.create(FTJ, {**load_ftj(), "status": {"phase": "Succeeded"}})
    assert "status" not in ftj  # status only through /status
    cluster.patch(FTJ, "team-a", "llama-lora", {"status": {"phase": "Running"}}, status=True)
    obj = cluster.patch(
        FTJ,
        "team-a",
        "llama-lora",
        {"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}},
    )
    assert obj["status"]["phase"] == "Running" and obj["metadata"]["generation"] == 1
    obj = cluster.patch(FTJ, "team-a", "llama-lora", {"spec": {"training": {"maxSteps": 5}}})
    assert obj["metadata"]["generation"] == 2
    obj = cluster.patch(
        FTJ, "team-a", "llama-lora", {"spec": {"x": 1}, "status": {"phase": "P"}}, status=True
    )
    assert "x" not in obj["spec"] and obj["status"]["phase"] == "P"


def test_watch_resumes_from_a_resource_version_without_loss_or_replay(cluster):
    cluster.create(CM, {"metadata": {"name": "old"}}, "ns")
    listing = cluster.call("GET", api_path(CM, "ns")).json()
    rv = listing["metadata"]["resourceVersion"]
    cluster.create(CM, {"metadata": {"name": "new", "labels": {"app": "x"}}}, "ns")
    cluster.delete(CM, "ns", "old")
    events = watch(cluster, CM, "ns", resourceVersion=rv)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "new"),
        ("DELETED", "old"),
    ]
    # Without a version: the current objects as ADDED; selectors filter watches too.
    assert [e["object"]["metadata"]["name"] for e in watch(cluster, CM, "ns")] == ["new"]
    assert watch(cluster, CM, "ns", labelSelector="app!=x") == []
    assert len(watch(cluster, CM, None, labelSelector="app in (x,y)")) == 1


def test_label_and_field_selectors(cluster):
    for name, labels in (("a", {"job": "j", "n": "1"}), ("b", {"job": "j"}), ("c", {})):
        cluster.create(CM, {"metadata": {"name": name, "labels": labels}}, "ns")

    def names(**p: str) -> list[str]:
        items = cluster.call("GET", api_path(CM, "ns"), params=p).json()["items"]
        return sorted(i["metadata"]["name"] for i in items)

    assert names(labelSelector="job=j") == ["a", "b"]
    assert names(labelSelector="job=j,!n") == ["b"]
    assert names(labelSelector="n") == ["a"]
    assert names(labelSelector="job notin (j)") == ["c"]
    assert names(fieldSelector="metadata.name!=a") == ["b", "c"]


def test_finalizers_and_garbage_collection(cluster):
    owner = cluster.create(CM, {"metadata": {"name": "owner", "finalizers": ["x/y"]}}, "ns")
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    cluster.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}}, "ns")
    marked = cluster.delete(CM, "ns", "owner")
    assert marked["metadata"]["deletionTimestamp"]
    assert cluster.get(CM, "ns", "owner") and cluster.get(CM, "ns", "child")
    cluster.patch(CM, "ns", "owner", {"metadata": {"finalizers": None}})
    assert cluster.get(CM, "ns", "owner") is None
    assert cluster.get(CM, "ns", "child") is None  # collected with its owner
    history = cluster.emu.objects["v1/configmaps", "ns", "owner"].history  # KMock's store
    assert history[-1] is None and history[-2]["metadata"]["deletionTimestamp"]


def test_discovery_reports_the_core_group_as_v1_and_crds(cluster):
    core = cluster.call("GET", "/api/v1").json()
    assert core["groupVersion"] == "v1"
    assert {"pods", "pods/status", "namespaces"} <= {r["name"] for r in core["resources"]}
    ours = cluster.call("GET", "/apis/kubetune.io/v1alpha1").json()["resources"]
    ftj = next(r for r in ours if r["name"] == "finetunejobs")
    assert ftj["kind"] == "FineTuneJob" and ftj["shortNames"] == ["ftj"] and ftj["namespaced"]
    assert any(r["name"] == "finetunejobs/status" for r in ours)
    assert cluster.call("GET", "/api/v1/namespaces/team-a").status_code == 200
