"""Failures, run policy and deletion, through the real operator against the emulator."""

from __future__ import annotations

import time
from datetime import datetime

from kubetune_api import constants as c
from kubetune_api.constants import ExitCode, Reason
from kubetune_api.termination import TerminationSummary
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import (
    create_pods,
    job_env,
    set_job_status,
    set_running,
    set_terminated,
)
from tests.support.kube.operator import NS, cond, load_ftj, phase_is, posts, start_attempt, status

JOBS = "batch/v1/jobs"


def has_events(cluster: EmulatorServer, *reasons: str) -> set[str]:
    """Wait until the FineTuneJob has Events with these reasons (kopf posts them async)."""
    return wait_for(
        lambda: (
            (got := {e["reason"] for e in cluster.events(NS, "llama-lora")}) >= set(reasons) and got
        ),
        what=f"Events {reasons}",
    )


def test_retryable_exit_starts_attempt_2_which_resumes(operator):
    cluster = operator
    pods = start_attempt(cluster)
    # Rank 1 loses its peer (exit 75); the checkpoint it reports is kept in status.
    msg = TerminationSummary(
        message="rendezvous lost", checkpoint="s3://artifacts/ckpt/step-000040"
    )
    set_terminated(cluster, NS, pods[1], ExitCode.RETRYABLE, msg.to_line())
    job2 = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2's Job")
    env = job_env(job2)
    assert env["KUBETUNE_ATTEMPT"] == "2"
    assert env["KUBETUNE_MASTER_ADDR"] == "llama-lora-a2-0.llama-lora-a2"
    st = status(cluster)
    assert (st["attempt"], st["restarts"], st["preemptions"]) == (2, 1, 0)
    assert st["lastCheckpoint"] == "s3://artifacts/ckpt/step-000040"
    assert cond(st, "Restarting")["reason"] == "RetryableFailure"
    assert "restart 1/2" in cond(st, "Restarting")["message"]
    # The failed attempt is cleaned up (its pods go with it through the GC).
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1") is None, what="attempt 1 deleted")
    assert cluster.get("v1/services", NS, "llama-lora-a1") is None
    assert not cluster.list("v1/pods", NS, "kubetune.io/attempt=1")
    # Attempt 2 runs: Restarting flips back to False.
    for pod in create_pods(cluster, NS, "llama-lora-a2"):
        set_running(cluster, NS, pod, "127.0.0.1")
    st = wait_for(lambda: phase_is(cluster, "Running"), what="attempt 2 Running")
    assert cond(st, "Restarting")["status"] == "False"


def test_preemption_starts_a_new_attempt_without_counting(operator):
    cluster = operator
    pods = start_attempt(cluster)
    set_terminated(cluster, NS, pods[0], 137, reason="Error", disruption=True)
    try:  # the other rank exits after losing its peer, unless the operator was quicker
        set_terminated(cluster, NS, pods[1], ExitCode.RETRYABLE)
    except AssertionError as exc:  # the preemption alone restarted the attempt: pods gone
        assert "404" in str(exc), exc
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2's Job")
    st = status(cluster)
    assert (st["attempt"], st["restarts"], st["preemptions"]) == (2, 0, 1)
    assert cond(st, "Restarting")["reason"] == "Preempted"


def test_evicted_pod_gone_is_still_a_preemption(operator):
    # The Eviction API marks the pod DisruptionTarget, the trainer saves and exits, and the
    # pod is deleted: only the Job's Failed condition (its podFailurePolicy) says why.
    cluster = operator
    pods = start_attempt(cluster)
    for pod in pods:
        cluster.delete("v1/pods", NS, pod["metadata"]["name"])
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
        "message": f"Pod {NS}/{pods[0]['metadata']['name']} has condition DisruptionTarget "
        "matching FailJob rule at index 1",
    }
    set_job_status(cluster, NS, "llama-lora-a1", active=0, failed=1, conditions=[failed])
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2's Job")
    st = status(cluster)
    assert (st["attempt"], st["restarts"], st["preemptions"]) == (2, 0, 1)
    assert cond(st, "Restarting")["reason"] == "Preempted"


def test_oom_fails_with_a_memory_recommendation(operator):
    cluster = operator
    pods = start_attempt(cluster)
    set_terminated(cluster, NS, pods[0], 137, reason="OOMKilled")
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    assert cond(st, "Failed")["reason"] == "OutOfMemory"
    assert "4bit" in st["message"] and "gradientCheckpointing" in st["message"]
    assert "microBatchSize" in st["message"]
    assert cluster.get(JOBS, NS, "llama-lora-a2") is None
    has_events(cluster, Reason.OUT_OF_MEMORY)
    (ev,) = [e for e in cluster.events(NS, "llama-lora") if e["reason"] == Reason.OUT_OF_MEMORY]
    assert ev["type"] == "Warning" and "4bit" in ev["message"]
    assert len(posts(cluster, "jobs")) == 1


def test_bad_data_fails_with_the_trainers_message(operator):
    cluster = operator
    pods = start_attempt(cluster)
    msg = {
        "phase": "Failed",
        "exitCode": 65,
        "message": "dataset: line 17: missing field `messages`; line 42: empty answer",
    }
    set_terminated(cluster, NS, pods[0], ExitCode.BAD_DATA, msg)
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    assert cond(st, "Failed")["reason"] == "BadData"
    assert "line 17: missing field `messages`" in st["message"]
    assert "line 42" in st["message"]


def test_max_restarts_exhausted_fails(operator):
    cluster = operator
    pods = start_attempt(cluster, runPolicy={"maxRestarts": 0, "backoffSeconds": 0})
    set_terminated(cluster, NS, pods[0], ExitCode.INTERNAL, {"message": "boom"})
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    assert cond(st, "Failed")["reason"] == "MaxRestartsExceeded"
    assert st["restarts"] == 0 and "boom" in st["message"]


def test_suspend_stops_pods_and_resume_starts_a_new_attempt(operator):
    cluster = operator
    start_attempt(cluster)
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"suspend": True}}})
    st = wait_for(lambda: phase_is(cluster, "Suspended"), what="Suspended")
    assert cond(st, "Suspended")["status"] == "True"
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1") is None, what="the Job deleted")
    assert not cluster.list("v1/pods", NS, "kubetune.io/job=llama-lora")
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"suspend": False}}})
    job2 = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2 on resume")
    assert job_env(job2)["KUBETUNE_ATTEMPT"] == "2"
    st = status(cluster)
    assert cond(st, "Suspended")["status"] == "False" and st["restarts"] == 0
    assert st["observedGeneration"] == 3
    has_events(cluster, Reason.SUSPENDED, Reason.RESUMED)


def test_immutable_change_is_rejected_and_the_job_keeps_running(operator):
    cluster = operator
    start_attempt(cluster)
    before = cluster.get(JOBS, NS, "llama-lora-a1")
    cluster.patch(
        FTJ,
        NS,
        "llama-lora",
        {"spec": {"training": {"maxSteps": 5000}, "runPolicy": {"maxRestarts": 7}}},
    )
    st = wait_for(lambda: cond(status(cluster), "SpecChangeRejected") and status(cluster))
    rejected = cond(st, "SpecChangeRejected")
    assert rejected["status"] == "True" and rejected["reason"] == "ImmutableFieldChanged"
    assert rejected["message"].startswith("spec.training cannot change")
    assert st["phase"] == "Running" and st["observedGeneration"] == 2
    assert cluster.get(JOBS, NS, "llama-lora-a1") == before  # untouched
    assert len(posts(cluster, "jobs")) == 1
    has_events(cluster, Reason.IMMUTABLE_FIELD)
    (ev,) = [e for e in cluster.events(NS, "llama-lora") if e["reason"] == Reason.IMMUTABLE_FIELD]
    assert ev["type"] == "Warning" and ev["message"] == rejected["message"]  # posted once
    # Reverting the immutable field clears the condition.
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"training": {"maxSteps": 100}}})
    wait_for(lambda: cond(status(cluster), "SpecChangeRejected")["status"] == "False")


def test_run_policy_edit_is_honoured_by_the_next_failure(operator):
    cluster = operator
    pods = start_attempt(cluster)  # maxRestarts: 2
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"maxRestarts": 5}}})
    wait_for(lambda: status(cluster).get("observedGeneration") == 2, what="the edit seen")
    set_terminated(cluster, NS, pods[1], ExitCode.RETRYABLE, {"message": "peer lost"})
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2's Job")
    st = status(cluster)
    assert "restart 1/5" in cond(st, "Restarting")["message"]  # the new maximum
    assert not cond(st, "SpecChangeRejected")  # runPolicy is mutable


def test_deadline_fails_the_whole_job(operator):
    cluster = operator
    cluster.create(FTJ, load_ftj(runPolicy={"activeDeadlineSeconds": 1}))
    job = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    assert 0 < job["spec"]["activeDeadlineSeconds"] <= 1
    st = wait_for(lambda: phase_is(cluster, "Failed"), timeout=10, what="DeadlineExceeded")
    assert cond(st, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1") is None, what="the Job deleted")


def test_ttl_deletes_the_finished_job(operator):
    cluster = operator
    pods = start_attempt(cluster, runPolicy={"ttlSecondsAfterFinished": 0})
    set_terminated(cluster, NS, pods[0], 0, {"message": "done"})
    set_job_status(
        cluster, NS, "llama-lora-a1", conditions=[{"type": "Complete", "status": "True"}]
    )
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="TTL deletion")
    assert not cluster.list(JOBS, NS) and not cluster.list("v1/pods", NS)
    assert not cluster.list("v1/configmaps", NS) and not cluster.list("v1/services", NS)


def test_ttl_added_after_the_job_finished_waits_then_deletes(operator):
    cluster = operator
    pods = start_attempt(cluster)  # no TTL: a finished job stays
    for pod in pods:
        set_terminated(cluster, NS, pod, 0, {"message": "done"})
    set_job_status(
        cluster, NS, "llama-lora-a1", conditions=[{"type": "Complete", "status": "True"}]
    )
    st = wait_for(lambda: phase_is(cluster, "Succeeded"), what="Succeeded")
    assert st["observedGeneration"] == 1
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"ttlSecondsAfterFinished": 2}}})
    # The finished job acknowledges the edit (observedGeneration) and is still there...
    st = wait_for(lambda: status(cluster).get("observedGeneration") == 2 and status(cluster))
    assert st["phase"] == "Succeeded"
    due = datetime.fromisoformat(st["completionTime"].replace("Z", "+00:00")).timestamp() + 2
    # ...until the TTL, counted from completionTime, has passed: then the operator deletes it.
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, timeout=10, what="TTL deletion")
    assert time.time() >= due
    deletes = [
        r
        for r in cluster.requests()
        if r.method.value == "DELETE" and r.url.path.endswith("/finetunejobs/llama-lora")
    ]
    assert [r.headers.get("User-Agent") for r in deletes] == ["kubetune-operator"]
    assert not cluster.list(JOBS, NS) and not cluster.list("v1/configmaps", NS)


def test_delete_waits_for_the_pods_to_go_with_their_job(operator):
    cluster = operator
    pods = start_attempt(cluster)
    # One pod takes its time to stop (the kubelet's grace period, played by a finalizer).
    slow = pods[0]["metadata"]["name"]
    finalizer = {"metadata": {"finalizers": ["test.kubetune.io/terminating"]}}
    cluster.patch("v1/pods", NS, slow, finalizer)
    cluster.delete(FTJ, NS, "llama-lora")
    # The Job goes at once (Background); the garbage collector deletes its pods.
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1") is None, what="the Job deleted")
    assert (cluster.get("v1/pods", NS, slow) or {})["metadata"].get("deletionTimestamp")
    # The finalizer waits for it: the handler retries, kopf keeps its progress in the
    # annotations under our prefix (settings.persistence.progress_storage).
    ftj = wait_for(
        lambda: (
            (f := cluster.get(FTJ, NS, "llama-lora"))
            and any("retries" in v for v in (f["metadata"].get("annotations") or {}).values())
            and f
        ),
        what="the deletion handler's retry",
    )
    assert c.FINALIZER in ftj["metadata"]["finalizers"]
    kopf_keys = set()
    for r in cluster.requests():
        body = r.data if isinstance(r.data, dict) else {}
        if r.method.value == "PATCH" and r.headers.get("User-Agent", "").startswith("kopf"):
            kopf_keys |= set((body.get("metadata") or {}).get("annotations") or {})
    assert kopf_keys and all(k.startswith("kubetune.io/") for k in kopf_keys), kopf_keys
    # The pod stops: the next retry finds nothing left and releases the FineTuneJob.
    cluster.patch("v1/pods", NS, slow, {"metadata": {"finalizers": None}})
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the FineTuneJob gone")
    assert not cluster.list(JOBS, NS) and not cluster.list("v1/pods", NS)
    assert not cluster.list("v1/configmaps", NS) and not cluster.list("v1/services", NS)
    # The finalizer deleted the Job itself (not only the emulator's GC), never a pod.
    ours = [r for r in cluster.requests() if r.headers.get("User-Agent") == "kubetune-operator"]
    deletes = [r.url.path for r in ours if r.method.value == "DELETE"]
    assert f"/apis/batch/v1/namespaces/{NS}/jobs/llama-lora-a1" in deletes
    assert not [p for p in deletes if "/pods" in p], deletes
    (job_delete,) = [
        r for r in ours if r.method.value == "DELETE" and "/jobs/llama-lora-a1" in r.url.path
    ]
    assert job_delete.data["propagationPolicy"] == "Background"  # its pods go with it


def test_stale_attempt_is_swept_after_a_crash_between_status_and_delete(cluster):
    from tests.support.kube.cluster import run_operator

    with run_operator(cluster, [NS]):
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="attempt 1")
    # As if the operator died right after storing attempt 2, before deleting attempt 1.
    cluster.patch(FTJ, NS, "llama-lora", {"status": {"attempt": 2, "restarts": 1}}, status=True)
    with run_operator(cluster, [NS]):
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2")
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1") is None, what="attempt 1 swept")
    assert [j["metadata"]["name"] for j in cluster.list(JOBS, NS)] == ["llama-lora-a2"]


def test_backoff_delays_the_next_attempt_then_clears(operator):
    cluster = operator
    pods = start_attempt(cluster, runPolicy={"backoffSeconds": 1, "maxRestarts": 2})
    set_terminated(cluster, NS, pods[0], ExitCode.RETRYABLE)
    job2 = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a2"), what="attempt 2")
    wait_for(lambda: "nextAttemptAfter" not in status(cluster), what="the backoff mark cleared")
    # The mark lives for the 1 s backoff only: read it from the status write that set it
    # (the API's request log), not by polling, which a loaded machine can miss.
    marks = [
        st
        for r in cluster.requests()
        if r.method.value == "PATCH" and r.subresource == "status" and isinstance(r.data, dict)
        and (st := r.data.get("status") or {}).get("nextAttemptAfter")
    ]  # fmt: skip
    assert len(marks) == 1 and marks[0]["attempt"] == 2 and marks[0]["phase"] == "Pending"
    # Created no earlier than the backoff allowed (both are whole-second RFC 3339 times).
    assert job2["metadata"]["creationTimestamp"] >= marks[0]["nextAttemptAfter"]


def test_delete_does_not_wait_for_pods_orphaned_by_hand(operator):
    cluster = operator
    start_attempt(cluster)
    # A pod with our labels whose Job was deleted with propagation Orphan: no owner, no GC.
    stray = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "llama-lora-stray", "namespace": NS,
                          "labels": {c.LABEL_JOB: "llama-lora"}},
             "spec": {"containers": [{"name": "trainer", "image": "x"}]}}  # fmt: skip
    cluster.create("v1/pods", stray, NS)
    cluster.delete(FTJ, NS, "llama-lora")
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the FineTuneJob gone")
    assert cluster.get("v1/pods", NS, "llama-lora-stray") is not None  # pods are read-only
    ev = {e["reason"]: e for e in cluster.events(NS, "llama-lora")}["OrphanedPods"]
    assert ev["type"] == "Warning" and "llama-lora-stray" in ev["message"]
