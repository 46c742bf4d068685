"""Exit 73 (the trainer could not write: disk full, read-only or no permission) is permanent:
the FineTuneJob fails at once with reason StorageError and the trainer's message, whether
the pod is still there or only the Job's podFailurePolicy condition says so."""

from __future__ import annotations

from kubetune_api.constants import ExitCode
from kubetune_operator.builders import POD_FAILURE_POLICY
from kubetune_operator.decide import decide
from kubetune_operator.observe import observe
from tests.support.kube.operator import (
    failed_job,
    failing,
    inputs,
)

MSG = "no space left writing /out/ns/job/checkpoints/step-000004/optimizer.pt: free space"


def test_exit_73_fails_at_once_with_the_trainers_message() -> None:
    running = {"phase": "Running", "attempt": 1, "restarts": 0}
    obs = failing(ExitCode.STORAGE)
    obs.failure.message = MSG  # as read from the termination message
    plan = decide(inputs(running, obs, runPolicy={"maxRestarts": 3}))
    st = plan.status
    assert plan.finished and st.phase == "Failed" and st.restarts == 0
    failed = next(c for c in st.conditions if c.type == "Failed")
    assert failed.reason == "StorageError" and MSG in failed.message
    assert plan.delete_attempts == []  # no new attempt


def test_exit_73_through_the_jobs_pod_failure_policy() -> None:
    assert ExitCode.STORAGE in POD_FAILURE_POLICY["rules"][0]["onExitCodes"]["values"]
    message = (
        "Container trainer for pod ns/ft-a1-0-x7k2p failed with exit code 73 matching FailJob "
        "rule at index 0"
    )
    obs = observe(failed_job("PodFailurePolicy", message), [])
    assert (obs.failure.kind, obs.failure.exit_code) == ("storage", 73)
