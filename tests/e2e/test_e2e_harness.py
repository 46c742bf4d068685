"""The kubelet/Job-controller stand-in's own rules (pure functions, no servers): what the
scenarios rely on when they read pod and Job statuses."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support.e2e.pods import (
    INDEX_KEY,
    KUBELET_FINALIZER,
    LocalImage,
    MissingReference,
    PodFiles,
    container_env,
    disruption_condition,
    fallback_message,
    job_finished,
    job_status,
    pod_for_index,
    terminated_status,
)

JOB = {
    "metadata": {"name": "ft-a1", "namespace": "ns", "uid": "job-uid"},
    "spec": {
        "completions": 2,
        "parallelism": 2,
        "backoffLimit": 0,
        "completionMode": "Indexed",
        "template": {
            "metadata": {"labels": {"kubetune.io/job": "ft"}},
            "spec": {
                "subdomain": "ft-a1",
                "containers": [
                    {
                        "name": "trainer",
                        "image": "img",
                        "env": [{"name": "A", "value": "1"}],
                        "envFrom": [{"secretRef": {"name": "creds"}}],
                    }
                ],
            },
        },
    },
}


def _pod(phase: str, index: int) -> dict:
    pod = pod_for_index(JOB, index)
    pod["metadata"]["name"] = f"ft-a1-{index}-x"
    pod["status"] = {"phase": phase}
    return pod


def test_indexed_job_pod_identity() -> None:
    pod = pod_for_index(JOB, 1)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["labels"][INDEX_KEY] == "1" and meta["annotations"][INDEX_KEY] == "1"
    assert meta["labels"]["kubetune.io/job"] == "ft" and meta["labels"]["job-name"] == "ft-a1"
    assert meta["ownerReferences"][0]["uid"] == "job-uid"
    assert meta["finalizers"] == [KUBELET_FINALIZER]
    assert spec["hostname"] == "ft-a1-1" and spec["subdomain"] == "ft-a1"
    env = container_env(pod, spec["containers"][0], LocalImage(Path("/bin"), {}), SECRETS, {})
    assert env["JOB_COMPLETION_INDEX"] == "1"
    assert JOB["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


SECRETS = {"creds": {"data": {"KEY": base64.b64encode(b"s3cr3t").decode()}}}


def test_env_order_references_and_missing_secret() -> None:
    pod = pod_for_index(JOB, 0)
    container = {
        "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "X_"}],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "CACHE", "value": "$(HOME)/cache"},
            {"name": "K", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    }
    image = LocalImage(Path("/bin"), {"HOME": "/home/app", "PATH": "/bin"})
    env = container_env(pod, container, image, SECRETS, {})
    assert env["HOME"] == "/tmp" and env["CACHE"] == "/tmp/cache"  # env wins over the image
    assert env["X_KEY"] == "s3cr3t" and env["K"] == "s3cr3t" and env["NS"] == "ns"
    with pytest.raises(MissingReference, match="creds"):
        container_env(pod, container, image, {}, {})


def test_mount_remapping_longest_prefix_and_termination_file(tmp_path: Path) -> None:
    files = PodFiles(tmp_path, {"/cache": tmp_path / "c", "/cache/hf": tmp_path / "hf"})
    files.termination_path, files.termination_log = "/dev/termination-log", tmp_path / "t"
    assert files.remap("/cache/kubetune") == str(tmp_path / "c" / "kubetune")
    assert files.remap("/cache/hf/hub") == str(tmp_path / "hf" / "hub")
    assert files.remap("/cachet") == "/cachet" and files.remap("/dev/termination-log") == str(
        tmp_path / "t"
    )


def test_job_status_complete_failed_and_lost_pods() -> None:
    done = job_status(JOB, [_pod("Succeeded", 0), _pod("Succeeded", 1)], 0, {})
    assert job_finished({"status": done}) == "Complete" and done["completedIndexes"] == "0,1"
    running = job_status(JOB, [_pod("Succeeded", 0), _pod("Running", 1)], 0, {})
    assert job_finished({"status": running}) is None and running["active"] == 1
    failed = job_status(JOB, [_pod("Failed", 0), _pod("Running", 1)], 0, {})
    assert job_finished({"status": failed}) == "Failed" and failed["failed"] == 1
    lost = job_status(JOB, [_pod("Running", 1)], 1, {})  # a pod deleted before it ended
    assert job_finished({"status": lost}) == "Failed"
    again = job_status(JOB, [_pod("Failed", 0)], 0, failed)
    assert again["conditions"] == failed["conditions"], "conditions are written once"


@pytest.mark.parametrize(
    ("code", "disrupted", "kind"),
    [(76, True, "preempted"), (65, False, "bad_data"), (137, False, None)],
)
def test_pod_failure_policy_names_the_cause_the_operator_reads(code, disrupted, kind) -> None:
    """The operator's rules (builders.POD_FAILURE_POLICY) through this Job controller: the
    Failed condition alone tells observe() what happened once the pod itself is gone."""
    from kubetune_operator.builders import POD_FAILURE_POLICY
    from kubetune_operator.observe import observe

    job = {**JOB, "spec": {**JOB["spec"], "podFailurePolicy": POD_FAILURE_POLICY}}
    pod = _pod("Running", 0)
    cond = disruption_condition("EvictionByEvictionAPI", "Eviction API: evicting")
    pod["status"] = terminated_status(pod, "t0", "id", code, "", cond if disrupted else None)
    st = job_status(job, [pod, _pod("Running", 1)], 0, {})
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    if kind is None:  # no rule matches: the default backoffLimit handling
        assert failed["reason"] == "BackoffLimitExceeded"
        assert observe({"spec": {}, "status": st}, []).failure.kind == "retryable"
        return
    assert failed["reason"] == "PodFailurePolicy" and "ns/ft-a1-0-x" in failed["message"]
    seen = observe({"spec": {}, "status": st}, []).failure
    assert (seen.kind, seen.pod) == (kind, "ft-a1-0-x")


def test_pod_failure_policy_ignore_does_not_count() -> None:
    disrupted = [{"type": "DisruptionTarget", "status": "True"}]
    rules = [{"action": "Ignore", "onPodConditions": disrupted}]
    job = {**JOB, "spec": {**JOB["spec"], "podFailurePolicy": {"rules": rules}}}
    pod = _pod("Running", 0)
    pod["status"] = terminated_status(pod, "t0", "id", 76, "", disruption_condition("X", "y"))
    st = job_status(job, [pod], 0, {})
    assert st["failed"] == 0 and job_finished({"status": st}) is None


def test_termination_message_and_disruption() -> None:
    log = "\n".join(f"line {i}" for i in range(200))
    tail = fallback_message(log)
    assert tail.endswith("line 199") and len(tail.splitlines()) <= 80 and len(tail) <= 2048
    pod = _pod("Running", 0)
    st = terminated_status(pod, "t0", "id", 76, "{}", {"type": "DisruptionTarget"})
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert st["phase"] == "Failed" and term["exitCode"] == 76 and term["reason"] == "Error"
    assert {"type": "DisruptionTarget"} in st["conditions"]
    ok = terminated_status(pod, "t0", "id", 0, "")
    assert (
        ok["phase"] == "Succeeded"
        and "message" not in ok["containerStatuses"][0]["state"]["terminated"]
    )


def test_operator_blames_the_failed_pod_not_the_one_the_job_controller_stopped() -> None:
    """Statuses exactly as the kubelet stand-in writes them, read by the operator's observe().

    Node 1 dies (137); the Job fails (backoffLimit 0) and the Job controller deletes node 0,
    whose trainer checkpoints on SIGTERM and exits 76. That 76 is a consequence: the attempt
    failed (counted), it was not preempted. A real disruption still wins over its peers.
    """
    from kubetune_operator.observe import observe

    killed = _pod("Running", 1)
    killed["status"] = terminated_status(killed, "t0", "id1", 137, "log tail")
    stopped = _pod("Running", 0)
    stopped["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    stopped["status"] = terminated_status(stopped, "t0", "id0", 76, '{"message": "SIGTERM"}')
    job = {"spec": JOB["spec"], "status": job_status(JOB, [killed], 0, {})}
    failure = observe(job, [stopped, killed]).failure
    assert failure is not None and failure.kind == "retryable" and failure.exit_code == 137

    preempted = _pod("Running", 1)
    disruption = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    preempted["status"] = terminated_status(preempted, "t0", "id1", 76, "", disruption)
    peer = _pod("Running", 0)
    peer["status"] = terminated_status(peer, "t0", "id0", 75, '{"message": "lost a peer"}')
    failure = observe(job, [peer, preempted]).failure
    assert failure is not None and failure.kind == "preempted"
