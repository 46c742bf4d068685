"""Pure decisions: failure classification, backoff, conditions, progress parsing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from kubetune_operator.decide import decide, immutable_changes
from kubetune_operator.observe import Observation, classify_pod, observe
from kubetune_operator.progress import RateSample, parse_metrics, to_progress
from tests.support.kube.operator import (
    NOW,
    failed_job,
    failing,
    inputs,
    load_ftj,
    pod,
)


@pytest.mark.parametrize(
    ("code", "reason", "disrupted", "kind"),
    [
        (66, None, False, "oom"),
        (137, "OOMKilled", False, "oom"),
        (65, None, False, "bad_data"),
        (64, None, False, "invalid_spec"),
        (76, None, False, "preempted"),
        (137, None, True, "preempted"),
        (75, None, False, "retryable"),
        (70, None, False, "retryable"),
        (1, None, False, "retryable"),
    ],
)
def test_classify_pod(code, reason, disrupted, kind):
    assert classify_pod(pod(0, code, reason, disrupted)).kind == kind


def test_most_specific_failure_wins_across_ranks():
    # Rank 1 OOMs, rank 0 loses its peer: the job failed of OOM, not of a lost peer.
    obs = observe({"spec": {}, "status": {}}, [pod(0, 75), pod(1, 137, "OOMKilled")])
    assert obs.failure.kind == "oom" and obs.failure.pod == "p1"
    obs = observe({"spec": {}, "status": {}}, [pod(0, 75), pod(1, 137, disrupted=True)])
    assert obs.failure.kind == "preempted"
    assert observe(None, [pod(0, None), pod(1, None)]).failure is None


@pytest.mark.parametrize(
    ("message", "kind", "code"),
    [
        # The Job controller's FailJob messages (pkg/controller/job/pod_failure_policy.go).
        ("Pod ns/ft-a1-0-x7k2p has condition DisruptionTarget matching FailJob rule at index 1",
         "preempted", None),
        ("Container trainer for pod ns/ft-a1-0-x7k2p failed with exit code 65 matching FailJob "
         "rule at index 0", "bad_data", 65),
        ("Container trainer for pod ns/ft-a1-0-x7k2p failed with exit code 66 matching FailJob "
         "rule at index 0", "oom", 66),
    ],
)  # fmt: skip
def test_job_condition_names_the_failure_when_the_pod_is_gone(message, kind, code):
    obs = observe(failed_job("PodFailurePolicy", message), [])
    assert (obs.failure.kind, obs.failure.exit_code, obs.failure.pod) == (
        kind,
        code,
        "ft-a1-0-x7k2p",
    )
    # What is left of the attempt (a peer the Job controller stopped: exit 76 while being
    # deleted) only saw the fallout; the Job's condition still names the cause.
    stopped = pod(1, 76)
    stopped["metadata"]["deletionTimestamp"] = "2026-11-22T01:00:00Z"
    obs = observe(failed_job("PodFailurePolicy", message), [stopped])
    assert obs.failure.kind == kind and not obs.failure.collateral
    # A pod that is still there with its own status says more than the condition.
    obs = observe(failed_job("PodFailurePolicy", message), [pod(0, 75)])
    assert obs.failure.kind == "retryable" and obs.failure.pod == "p0"


def test_job_failed_without_a_policy_rule_is_retryable_or_deadline():
    lost = observe(failed_job("BackoffLimitExceeded", "Job has reached the backoff limit"), [])
    assert lost.failure.kind == "retryable"
    late = observe(failed_job("DeadlineExceeded", "Job was active longer than specified"), [])
    assert late.failure.kind == "deadline"


def test_termination_message_json_or_log_tail():
    obs = observe({"spec": {}, "status": {}}, [pod(0, 65, message='log line\n{"message": "bad"}')])
    assert obs.failure.message == "bad"
    obs = observe({"spec": {}, "status": {}}, [pod(0, 1, message="Traceback: boom")])
    assert "boom" in obs.failure.message


def test_backoff_doubles_per_restart():
    running = {"phase": "Running", "attempt": 1, "restarts": 0}
    plan = decide(inputs(running, failing(75), runPolicy={"backoffSeconds": 30, "maxRestarts": 3}))
    st = plan.status
    assert (st.attempt, st.restarts) == (2, 1) and plan.delete_attempts == [1]
    assert st.next_attempt_after == (NOW + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    running = {"phase": "Running", "attempt": 3, "restarts": 2}
    plan = decide(inputs(running, failing(75), runPolicy={"backoffSeconds": 30, "maxRestarts": 3}))
    assert plan.requeue_after == 120  # 30 x 2^2
    # While backing off nothing is created.
    waiting = {
        "phase": "Pending",
        "attempt": 4,
        "restarts": 3,
        "nextAttemptAfter": (NOW + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    plan = decide(inputs(waiting, None, runPolicy={"backoffSeconds": 30, "maxRestarts": 3}))
    assert plan.ensure_attempt is None and plan.requeue_after == 5


def test_status_unchanged_means_no_write():
    first = decide(inputs(None, None))
    assert first.status_changed and first.ensure_attempt == 1
    stored = first.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    again = decide(inputs(stored, Observation(job_exists=True)))
    assert not again.status_changed and not again.events


def test_immutable_changes_list_fields():
    a = load_ftj()["spec"]
    b = load_ftj(training={"maxSteps": 1}, runPolicy={"suspend": True})["spec"]
    assert immutable_changes(a, b) == ["spec.training"]


def test_progress_from_prometheus_text():
    text = (
        "# TYPE kubetune_train_step gauge\nkubetune_train_step 30\n"
        "kubetune_train_total_steps 120\nkubetune_train_loss 1.5\nkubetune_eval_loss 1.7\n"
        "kubetune_train_epoch 0.25\nkubetune_train_tokens_total 8000\nother_metric 1\n"
    )
    values = parse_metrics(text)
    first = RateSample(t=100.0, step=10)
    p = to_progress(values, now=110.0, first=first)
    assert (p.step, p.total_steps, p.loss, p.eval_loss) == (30, 120, 1.5, 1.7)
    assert p.eta_seconds == 45.0 and p.eta == "45s"  # 90 steps left at 2 steps/s
    assert p.display == "30/120 (25%)"
    assert p.tokens_per_second is None  # one reading of a counter is no rate
    assert parse_metrics("not prometheus {{{") == {}


def test_tokens_per_second_is_the_token_counters_rate_between_scrapes():
    first = RateSample(t=100.0, step=10)
    to_progress({"step": 10, "total_steps": 100, "tokens": 8000}, now=100.0, first=first)
    p = to_progress({"step": 20, "total_steps": 100, "tokens": 12000}, now=104.0, first=first)
    assert p.tokens_per_second == 1000.0 and p.eta_seconds == 32.0  # 80 steps at 2.5/s
    # A new process (the counter starts again) is a new baseline, not a negative rate; the
    # ETA keeps its own first sample.
    p = to_progress({"step": 22, "total_steps": 100, "tokens": 500}, now=110.0, first=first)
    assert p.tokens_per_second is None and p.eta_seconds == 65.0  # 78 steps at 1.2/s
    p = to_progress({"step": 24, "total_steps": 100, "tokens": 2500}, now=112.0, first=first)
    assert p.tokens_per_second == 1000.0


def test_success_reads_the_trainers_flat_summary():
    message = (
        '{"adapter_uri": "s3://a/team-a/llama-lora/adapter", "adapter_sha256": "ff", '
        '"adapter_size": 99, "checkpoint": "s3://a/ckpt/step-000100", "loss": 0.5, '
        '"message": "training finished", "phase": "done", "step": 100}'
    )
    done = {"spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    obs = observe(done, [pod(0, 0, "Completed", message=message)])
    plan = decide(inputs({"phase": "Running", "attempt": 1}, obs))
    st = plan.status
    assert st.phase == "Succeeded" and plan.finished
    assert (st.adapter.uri, st.adapter.sha256, st.adapter.size_bytes) == (
        "s3://a/team-a/llama-lora/adapter",
        "ff",
        99,
    )
    assert st.last_checkpoint == "s3://a/ckpt/step-000100" and st.progress.loss == 0.5
    assert "training finished" in st.message


def test_pending_pods_say_why():
    unschedulable = {
        "metadata": {"name": "p0"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    obs = observe({"spec": {}, "status": {}}, [unschedulable])
    plan = decide(inputs({"phase": "Pending", "attempt": 1, "jobName": "llama-lora-a1"}, obs))
    assert plan.status.phase == "Pending" and plan.status_changed
    assert "Insufficient nvidia.com/gpu" in plan.status.message
    pulling = {
        "metadata": {"name": "p0"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
            ],
        },
    }
    obs = observe({"spec": {}, "status": {}}, [pulling])
    assert obs.waiting == "ImagePullBackOff: not found" and obs.failure is None


def test_status_patch_nulls_what_was_cleared():
    from kubetune_operator.status import merge_patch

    old = {"phase": "Pending", "nextAttemptAfter": "t", "progress": {"step": 3, "etaSeconds": 9.0}}
    new = {"phase": "Running", "progress": {"step": 4}}
    assert merge_patch(old, new) == {
        "phase": "Running",
        "nextAttemptAfter": None,
        "progress": {"step": 4, "etaSeconds": None},
    }
    assert merge_patch(new, new) == {}


def test_finished_job_acknowledges_a_later_spec_edit():
    # Succeeded at generation 1; the user then adds a TTL (generation 2).
    done = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    finished = {
        "phase": "Succeeded",
        "attempt": 1,
        "observedGeneration": 1,
        "completionTime": done,
    }
    edited = replace(
        inputs(finished, None, runPolicy={"ttlSecondsAfterFinished": 60}), generation=2
    )
    plan = decide(edited)
    assert plan.finished and plan.status_changed and not plan.delete_self
    assert plan.status.observed_generation == 2 and plan.status.phase == "Succeeded"
    assert plan.requeue_after == 50  # the TTL counts from completionTime
    assert not plan.events and plan.ensure_attempt is None
    # Once stored, the same generation changes nothing (no write, no event).
    stored = plan.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    again = decide(replace(edited, status=stored))
    assert not again.status_changed and again.status.observed_generation == 2


def test_an_accepted_spec_the_new_rules_refuse_fails_instead_of_raising():
    # Accepted by an older operator; after an upgrade its registerAs (a path) is refused.
    running = {"phase": "Running", "attempt": 1, "observedGeneration": 1}
    base = inputs(running, None)
    stale = dict(base.accepted_spec)
    stale["tracking"] = {**stale.get("tracking", {}), "registerAs": "../x"}
    plan = decide(replace(base, accepted_spec=stale, spec=stale))
    assert plan.finished and plan.status.phase == "Failed"
    failed = [c for c in plan.status.conditions if c.type == "Failed"]
    assert failed and failed[0].reason == "InvalidSpec"
    assert "tracking.registerAs" in failed[0].message and "re-create" in failed[0].message
