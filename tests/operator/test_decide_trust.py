"""Pure decisions on what the operator must not trust: a foreign child, a permanent API
refusal, a job outside the allow-lists, and rank 0's non-finite metrics."""

from __future__ import annotations

import logging
from dataclasses import replace

from kubetune_operator.config import Policy
from kubetune_operator.decide import decide
from kubetune_operator.observe import Observation
from kubetune_operator.progress import RateSample, parse_metrics, to_progress
from tests.support.kube.operator import (
    inputs,
)


def conditions(plan) -> dict:
    return {c.type: c for c in plan.status.conditions}


def test_conflict_blocks_children_and_never_finishes():
    msg = "Job team-a/llama-lora-a1 exists but is not owned by this FineTuneJob"
    plan = decide(replace(inputs(None, None), conflict=msg))
    assert plan.ensure_attempt is None and not plan.finished
    assert plan.status.phase == "Pending" and plan.status.message == msg
    cnd = conditions(plan)["ChildConflict"]
    assert (cnd.status, cnd.reason, cnd.message) == ("True", "ChildConflict", msg)
    assert [e.reason for e in plan.events] == ["ChildConflict"]
    # The next look sees it again: no new event; once it is gone, the condition clears.
    again = decide(replace(inputs(plan.status.model_dump(by_alias=True), None), conflict=msg))
    assert not again.events and again.status.phase == "Pending"
    cleared = decide(inputs(again.status.model_dump(by_alias=True), None))
    assert conditions(cleared)["ChildConflict"].status == "False"
    assert cleared.ensure_attempt == 1


def test_rejected_child_fails_the_attempt_and_removes_it():
    status = {"phase": "Pending", "attempt": 1, "jobName": "llama-lora-a1"}
    plan = decide(replace(inputs(status, Observation()), rejected="HTTP 422: invalid"))
    assert plan.status.phase == "Failed" and plan.finished and plan.delete_attempts == [1]
    assert conditions(plan)["Failed"].reason == "ApiRejected"
    assert "HTTP 422: invalid" in plan.status.message


def test_policy_is_checked_before_acceptance_only():
    policy = Policy("registry.test/trainer:1", ("registry.test/*",), ("trainer",))
    plan = decide(replace(inputs(None, None, resources={"image": "x.io/y:1"}), policy=policy))
    assert plan.status.phase == "Failed" and plan.accept_spec is None
    assert plan.ensure_attempt is None and conditions(plan)["Failed"].reason == "Forbidden"
    ok = decide(replace(inputs(None, None), policy=policy))  # default image, SA "trainer"
    assert ok.ensure_attempt == 1


def test_non_finite_metrics_are_dropped(caplog):
    caplog.set_level(logging.WARNING)
    text = (
        "kubetune_train_step +Inf\nkubetune_train_total_steps NaN\nkubetune_train_loss 1.5\n"
        "kubetune_train_epoch 1e300\n"
    )
    values = parse_metrics(text)
    assert values == {"loss": 1.5}
    assert "kubetune_train_step=inf" in caplog.text
    p = to_progress(values, 10.0, RateSample(0.0, 0))
    assert (p.step, p.total_steps, p.loss) == (0, 0, 1.5)
