"""Scenarios 4, 5, 6 and 9: failures injected into a running job.

Each job checkpoints every 10 of 40 steps; the fault lands after the first commit, so
what the next attempt resumes from is a real checkpoint in S3, not the start.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from kubetune_api import constants as c
from tests.support.e2e.world import FTJ, World
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]
TOTAL = 40
RESUMED = re.compile(r"resuming from (s3://\S+) \(step (\d+)\)")


def _first_commit(world: World, name: str) -> list[int]:
    return world.wait_until(
        lambda: world.committed_steps(name), 180, "the first committed checkpoint", name
    )


def _resumed_from(world: World, name: str, attempt: int) -> tuple[str, int]:
    (pod,) = world.pods_of(name, attempt)
    log = world.log_of(pod["metadata"]["name"])
    m = RESUMED.search(log)
    assert m, f"attempt {attempt} did not resume:\n{log[-3000:]}"
    return m.group(1), int(m.group(2))


def _ended(world: World, name: str, attempt: int) -> dict | None:
    """The first stored version of the attempt's pod whose container shows `terminated`
    (from the API's history: the pod itself goes with its Job soon after)."""
    for pod in world.pod_history(f"{name}-a{attempt}"):
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        if "terminated" in (statuses[0].get("state") or {}):
            return pod
    return None


def test_pod_killed_resumes_from_last_checkpoint(world: World) -> None:
    name = "killed"
    world.submit(world.load("long-run.yaml", name, METRICS_PORT=free_port()))
    _first_commit(world, name)
    (pod,) = world.pods_of(name, 1)
    world.kubelet.kill(pod["metadata"]["name"])  # SIGKILL to the container: no goodbye
    seen = world.committed_steps(name)
    dead = world.wait_until(lambda: _ended(world, name, 1), 60, "attempt 1's pod to end", name)
    term = world.terminated(dead)
    assert dead["status"]["phase"] == "Failed" and term["exitCode"] == 137, term

    st = world.succeeded(name)
    assert st["restarts"] == 1 and st["preemptions"] == 0 and st["attempt"] == 2, st
    assert st["progress"]["step"] == TOTAL, st

    uri, step = _resumed_from(world, name, 2)
    assert step > 0 and step >= max(seen), (step, seen)
    assert uri.endswith(f"/checkpoints/step-{step:06d}"), uri
    events = world.events(name)
    retry = [e for e in events if e["reason"] == c.Reason.RETRYABLE_FAILURE]
    assert retry and "exit code 137" in retry[0]["message"], [e["message"] for e in events]
    # The failed attempt's Job went; one Job per attempt was ever created.
    assert [j["metadata"]["name"] for j in world.posts("jobs")] == [f"{name}-a1", f"{name}-a2"]
    assert world.children(name)["batch/v1/jobs"] == [f"{name}-a2"]
    world.assert_no_canary()


@pytest.mark.in_image  # pods run inside the built trainer image (tests/e2e/README.md)
def test_preemption_checkpoints_and_is_not_counted(world: World) -> None:
    name = "preempted"
    world.submit(world.load("long-run.yaml", name, METRICS_PORT=free_port()))
    before = _first_commit(world, name)
    (pod,) = world.pods_of(name, 1)
    world.kubelet.preempt(pod["metadata"]["name"])  # DisruptionTarget + SIGTERM

    # Attempt 1 saved a checkpoint on SIGTERM and said which: exit 76, DisruptionTarget, and
    # the checkpoint's URI and step in its termination summary.
    old = world.wait_until(
        lambda: _ended(world, name, 1), 180, "attempt 1's pod to end after SIGTERM", name
    )
    term = world.terminated(old)
    assert old["status"]["phase"] == "Failed", old["status"]
    assert term["exitCode"] == c.ExitCode.PREEMPTED, term
    conds = {x["type"]: x for x in old["status"]["conditions"]}
    assert conds["DisruptionTarget"]["status"] == "True", conds
    summary = json.loads(term["message"])
    saved_uri, saved_step = summary["checkpoint"], summary["step"]
    assert saved_uri.endswith(f"/checkpoints/step-{saved_step:06d}"), summary
    assert saved_step > max(before), f"saved on SIGTERM, after the commits {before}: {summary}"
    assert 0 < saved_step < TOTAL, summary

    st = world.succeeded(name)
    assert st["restarts"] == 0 and st["preemptions"] == 1 and st["attempt"] == 2, st
    assert st["progress"]["step"] == TOTAL, st

    # ...and attempt 2 resumed from exactly that checkpoint.
    assert _resumed_from(world, name, 2) == (saved_uri, saved_step), summary
    events = world.events(name)
    preempted = [e for e in events if e["reason"] == c.Reason.PREEMPTED]
    assert preempted, [e["reason"] for e in events]
    assert "exit code 76" in preempted[0]["message"], preempted[0]
    metrics = world.operator.metrics_text() or ""
    assert re.search(
        rf'kubetune_job_restarts_total\{{[^}}]*finetunejob="{name}"[^}}]*'
        rf'reason="preempted"[^}}]*\}} 1\.0',
        metrics,
    ), metrics
    world.assert_no_canary()


def test_operator_restarted_mid_run(world: World) -> None:
    name = "operator-restart"
    world.submit(world.load("long-run.yaml", name, METRICS_PORT=free_port()))
    before = world.wait(
        name,
        lambda s: s.get("phase") == c.Phase.RUNNING and s.get("progress", {}).get("step", 0) > 0,
        180,
        "Running with progress",
    )
    world.operator.stop()
    # Training goes on without an operator: wait for a checkpoint past what status shows.
    step0 = world.status(name)["progress"]["step"]
    assert step0 >= before["progress"]["step"]
    world.wait_until(
        lambda: [s for s in world.committed_steps(name) if s > step0 or s == TOTAL],
        180,
        "a later commit",
        name,
    )
    assert world.status(name)["progress"]["step"] == step0, "nobody should write status now"
    world.operator.start()

    st = world.succeeded(name)
    assert st["progress"]["step"] == TOTAL and st["attempt"] == 1 and st["restarts"] == 0, st
    # No duplicate children: exactly one Job and ConfigMap were ever created (and no
    # Service: a single-node job has none).
    for plural in ("jobs", "configmaps"):
        assert len(world.posts(plural)) == 1, (plural, world.posts(plural))
    assert world.posts("services") == []
    assert len(world.pods_of(name, 1)) == 1
    assert "operator start #2" in world.operator.log()
    world.assert_no_canary()


def test_deleted_mid_run_stops_everything(world: World) -> None:
    name = "deleted"
    world.submit(world.load("long-run.yaml", name, METRICS_PORT=free_port(), CLEANUP="delete"))
    _first_commit(world, name)
    pids = world.kubelet.live_pids()
    assert pids, "the trainer should be running"
    world.cluster.delete(FTJ, world.namespace, name)

    world.wait_until(lambda: world.ftj(name) is None, 120, "the FineTuneJob to go", name)
    assert world.kubelet.live_pids() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert world.children(name) == {kind: [] for kind in world.children(name)}, world.children(name)
    assert world.s3_keys(world.run_prefix(name)) == [], "cleanupPolicy: delete"
    reasons = [e["reason"] for e in world.events(name)]
    assert "CleanupDone" in reasons, reasons
    world.assert_no_canary()
