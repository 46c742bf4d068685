"""Children are used only if they are ours, and the API's answers are classified: through
the real operator against the API emulator.

An object that merely has a child's name (or our labels) is foreign: the FineTuneJob says
so in a ChildConflict condition and neither adopts, mounts nor reads it. A 4xx that no
retry can fix ends the attempt as Failed with the API server's message; a timeout is an
API error like any other (counted, retried with backoff).
"""

from __future__ import annotations

import time

import httpx

from kubetune_api import constants as c
from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, api_path, run_operator, wait_for
from tests.support.kube.job_play import INDEX
from tests.support.kube.operator import (
    NS,
    cond,
    load_ftj,
    metric_samples,
    operator_posts,
    phase_is,
    reconciles,
    start_attempt,
    status,
)
from tests.support.net import free_port

JOBS = "batch/v1/jobs"
LABELS = {c.LABEL_JOB: "llama-lora", c.LABEL_ATTEMPT: "1"}


def oom(cluster: EmulatorServer, pod: str) -> None:
    term = {"exitCode": 137, "reason": "OOMKilled"}
    cs = [{"name": "trainer", "state": {"terminated": term}}]
    cluster.patch("v1/pods", NS, pod, {"status": {"phase": "Failed", "containerStatuses": cs}},
                  status=True)  # fmt: skip


def conflict(cluster: EmulatorServer) -> dict:
    return wait_for(
        lambda: (cnd := cond(status(cluster), "ChildConflict")) and cnd["status"] == "True" and cnd,
        what="a ChildConflict condition",
    )


def settle(cluster: EmulatorServer, looks: int = 3) -> None:
    """Let the operator look `looks` more times."""
    target = reconciles(cluster) + looks
    wait_for(lambda: reconciles(cluster) >= target, what=f"{looks} more reconciles")


def test_foreign_configmap_is_not_mounted_until_it_goes(operator):
    cluster = operator
    foreign = {"metadata": {"name": "llama-lora-spec", "namespace": NS},
               "data": {c.SPEC_FILE_NAME: '{"spec": "someone else\'s"}'}}  # fmt: skip
    cluster.create("v1/configmaps", foreign)
    cluster.create(FTJ, load_ftj())
    cnd = conflict(cluster)
    assert cnd["reason"] == "ChildConflict"
    assert f"ConfigMap {NS}/llama-lora-spec exists but is not owned" in cnd["message"]
    settle(cluster)
    st = status(cluster)
    assert st["phase"] == "Pending" and "not owned" in st["message"]
    assert not cluster.list(JOBS, NS) and not operator_posts(cluster, "jobs")  # nothing mounts it
    assert cluster.get("v1/configmaps", NS, "llama-lora-spec")["data"] == foreign["data"]
    warnings = wait_for(  # kopf posts Events asynchronously; one, not one per look
        lambda: [e for e in cluster.events(NS, "llama-lora") if e["reason"] == "ChildConflict"]
    )
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    # The foreign object goes: the operator creates its own and carries on.
    cluster.delete("v1/configmaps", NS, "llama-lora-spec")
    job = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    uid = cluster.get(FTJ, NS, "llama-lora")["metadata"]["uid"]
    cm = cluster.get("v1/configmaps", NS, "llama-lora-spec")
    assert [r["uid"] for r in cm["metadata"]["ownerReferences"]] == [uid]
    assert job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "llama-lora-spec"
    wait_for(lambda: cond(status(cluster), "ChildConflict")["status"] == "False")


def test_foreign_complete_job_never_makes_it_succeed(operator):
    cluster = operator
    pod = {"spec": {"containers": [{"name": "x", "image": "x"}]}}
    foreign = {"metadata": {"name": "llama-lora-a1", "namespace": NS, "labels": LABELS},
               "spec": {"template": pod}}  # fmt: skip
    cluster.create(JOBS, foreign)
    cluster.patch(JOBS, NS, "llama-lora-a1",
                  {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
                  status=True)  # fmt: skip
    cluster.create(FTJ, load_ftj())
    cnd = conflict(cluster)
    assert f"Job {NS}/llama-lora-a1 exists but is not owned" in cnd["message"]
    settle(cluster)
    st = status(cluster)
    assert st["phase"] == "Pending" and not cond(st, "Succeeded") and not cond(st, "Failed")
    assert cluster.get(JOBS, NS, "llama-lora-a1")["metadata"].get("ownerReferences") is None
    assert not operator_posts(cluster, "jobs")
    # Deleting the FineTuneJob leaves the foreign Job alone (it only carries our labels).
    cluster.delete(FTJ, NS, "llama-lora")
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the FineTuneJob gone")
    assert cluster.get(JOBS, NS, "llama-lora-a1") is not None


def test_orphaned_pod_of_an_earlier_job_is_ignored(operator):
    cluster = operator
    start_attempt(cluster)
    # An OOMKilled pod left by an earlier incarnation: our labels, another Job's uid.
    orphan = {
        "metadata": {
            "name": "llama-lora-a1-0-old", "namespace": NS,
            "labels": {**LABELS, c.LABEL_MANAGED_BY: "kubetune-operator",
                       "batch.kubernetes.io/controller-uid": "uid-of-an-old-job"},
            "annotations": {INDEX: "0"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "controller": True,
                                 "name": "llama-lora-a1", "uid": "uid-of-an-old-job"}],
        },
        "spec": {"containers": [{"name": "trainer", "image": "x"}]},
    }  # fmt: skip
    cluster.create("v1/pods", orphan, NS)
    oom(cluster, "llama-lora-a1-0-old")
    settle(cluster)
    st = status(cluster)
    assert st["phase"] == "Running" and not cond(st, "Failed"), st
    # The pods of this very Job are still read: theirs do fail it.
    pods = [
        p for p in cluster.list("v1/pods", NS) if p["metadata"]["name"] != "llama-lora-a1-0-old"
    ]
    oom(cluster, pods[0]["metadata"]["name"])
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    assert cond(st, "Failed")["reason"] == "OutOfMemory"


def test_422_on_job_creation_fails_with_the_api_message(operator):
    cluster = operator
    message = (
        'Job.batch "llama-lora-a1" is invalid: spec.template.spec.containers[0].resources'
        '.requests: Invalid value: "64Gi": must be less than or equal to memory limit'
    )
    fault = cluster.emu.fail("POST", api_path(JOBS, NS), 422, message=message)
    cluster.create(FTJ, load_ftj())
    st = wait_for(lambda: phase_is(cluster, "Failed"), timeout=10, what="Failed")
    failed = cond(st, "Failed")
    assert failed["reason"] == "ApiRejected"
    assert message in failed["message"] and "HTTP 422" in failed["message"]
    assert fault.hits == 1 and len(operator_posts(cluster, "jobs")) == 1  # not retried
    # What the attempt had created goes with it.
    wait_for(lambda: cluster.get("v1/services", NS, "llama-lora-a1") is None, what="cleanup")
    time.sleep(1)  # two reconcile intervals: a finished job is not retried
    assert len(operator_posts(cluster, "jobs")) == 1


def test_quota_403_is_retried_not_failed(operator):
    cluster = operator
    quota = (
        'jobs.batch "llama-lora-a1" is forbidden: exceeded quota: team-a, '
        "requested: count/jobs.batch=1"
    )
    cluster.emu.fail("POST", api_path(JOBS, NS), 403, message=quota)
    cluster.create(FTJ, load_ftj())
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job on a retry")
    assert status(cluster)["phase"] == "Pending" and len(operator_posts(cluster, "jobs")) == 2


def test_api_timeout_is_counted_and_retried(cluster, caplog):
    port = free_port()
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=port, metrics_addr="127.0.0.1",
                            api_timeout=1.0)  # fmt: skip
    # The first look creates the job's ConfigMap: the API server stalls past the client's
    # timeout on that create twice in a row.
    path = api_path("v1/configmaps", NS)
    with run_operator(cluster, [NS], config):
        fault = cluster.emu.fail("POST", path, 500, times=2, agent="kubetune-operator", delay=3)
        began = time.monotonic()
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), timeout=20, what="the Job")
        took = time.monotonic() - began
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert fault.hits == 2
    errors = metric_samples(text, "kubetune_api_errors_total")
    assert errors == {(("code", "timeout"), ("verb", "post")): 2.0}, errors
    # Two 1 s timeouts, then backoff 0.5 s and 1 s before the looks that follow them.
    assert took >= 2 + 0.5 + 1.0, took
    # Logged through kopf's object logger: each record names the job (the log's
    # `[namespace/name]` prefix, JSON logs' object reference).
    refs = [
        getattr(r, "k8s_ref", {}).get("name")
        for r in caplog.records
        if "failed: " in r.getMessage() and "again in 0.5s" in r.getMessage()
    ]
    assert refs == ["llama-lora"], refs
