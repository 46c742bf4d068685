"""Conditions in metav1.Condition's shape, with Ready/Reconciling/Stalled as kstatus reads
them, through every phase of the pure decision (exact lists), and valid for the CRD."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import jsonschema
import pytest

from kubetune_api.crd import build_crd
from kubetune_operator.decide import Plan, decide
from kubetune_operator.observe import Observation
from kubetune_operator.status import dump_status, eta_display
from tests.support.kube.operator import NOW, failing, inputs

RUNNING = Observation(job_exists=True, running=True)
DONE = Observation(job_exists=True, complete=True)


def conds(plan: Plan) -> list[tuple[str, str, str, int]]:
    return [(c.type, c.status, c.reason, c.observed_generation) for c in plan.status.conditions]


def step(plan: Plan, obs: Observation | None, minutes: int, **spec: Any) -> Plan:
    """The next reconcile: the stored status, `minutes` later."""
    return decide(replace(inputs(dump_status(plan.status), obs, **spec),
                          now=NOW + timedelta(minutes=minutes)))  # fmt: skip


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic rules for a custom resource (sigs.k8s.io/cli-utils
    pkg/kstatus/status/generic.go checkGenericProperties, then the Ready condition)."""
    meta, st = obj["metadata"], obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if "observedGeneration" in st and st["observedGeneration"] != meta["generation"]:
        return "InProgress"
    by_type = {c["type"]: c for c in st.get("conditions", [])}
    if by_type.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if by_type.get("Stalled", {}).get("status") == "True":
        return "Failed"
    ready = by_type.get("Ready", {}).get("status")
    return "InProgress" if ready == "False" else "Current"


def kstatus_of(plan: Plan, generation: int = 1) -> str:
    return kstatus({"metadata": {"generation": generation}, "status": dump_status(plan.status)})


STATUS_SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
    "status"
]


def crd_valid(plan: Plan) -> None:
    """What the API server checks on the status subresource (required, patterns, limits)."""
    errors = [e.message for e in jsonschema.Draft4Validator(STATUS_SCHEMA).iter_errors(
        dump_status(plan.status))]  # fmt: skip
    assert not errors, errors
    for c in dump_status(plan.status)["conditions"]:
        assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime",
                          "observedGeneration"}  # fmt: skip


def test_a_job_from_created_to_succeeded() -> None:
    created = decide(inputs(None, None))
    assert conds(created) == [
        ("Created", "True", "JobCreated", 1),
        ("Ready", "False", "JobCreated", 1),
        ("Reconciling", "True", "JobCreated", 1),
    ]
    assert kstatus_of(created) == "InProgress"
    crd_valid(created)

    running = step(created, RUNNING, 1)
    assert conds(running) == [
        ("Created", "True", "JobCreated", 1),
        ("Ready", "False", "PodsRunning", 1),
        ("Reconciling", "True", "PodsRunning", 1),
        ("Running", "True", "PodsRunning", 1),
    ]
    ready = next(c for c in running.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == "2026-11-22T01:00:00Z"  # still False: not moved
    assert ready.message == running.status.message == "attempt 1: 2 node(s) running"
    assert kstatus_of(running) == "InProgress"

    retrying = step(running, failing(75), 2)
    assert conds(retrying) == [
        ("Created", "True", "JobCreated", 1),
        ("Ready", "False", "RetryableFailure", 1),
        ("Reconciling", "True", "RetryableFailure", 1),
        ("Running", "False", "RetryableFailure", 1),
        ("Restarting", "True", "RetryableFailure", 1),
    ]
    assert kstatus_of(retrying) == "InProgress"

    rerun = step(retrying, None, 60)  # the backoff is over: attempt 2's Job
    rerun = step(rerun, RUNNING, 61)
    done = step(rerun, DONE, 62)
    assert conds(done) == [
        ("Created", "True", "JobCreated", 1),
        ("Ready", "True", "Completed", 1),
        ("Reconciling", "False", "Completed", 1),
        ("Running", "False", "Completed", 1),
        ("Restarting", "False", "Completed", 1),
        ("Succeeded", "True", "Completed", 1),
    ]
    ready = next(c for c in done.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == "2026-11-22T02:02:00Z"  # False -> True now
    assert kstatus_of(done) == "Current"
    assert done.status.progress.eta == "0s" and done.status.progress.eta_seconds == 0
    crd_valid(done)


def test_failed_is_stalled_and_a_spec_edit_restamps_every_condition() -> None:
    running = step(decide(inputs(None, None)), RUNNING, 1)
    oom = step(running, failing(66), 2)
    assert conds(oom) == [
        ("Created", "True", "JobCreated", 1),
        ("Ready", "False", "OutOfMemory", 1),
        ("Reconciling", "False", "OutOfMemory", 1),
        ("Running", "False", "OutOfMemory", 1),
        ("Failed", "True", "OutOfMemory", 1),
        ("Stalled", "True", "OutOfMemory", 1),
    ]
    stalled = next(c for c in oom.status.conditions if c.type == "Stalled")
    assert stalled.message == oom.status.message and "out of memory" in stalled.message
    assert kstatus_of(oom) == "Failed"
    crd_valid(oom)
    # Generation 2 (a TTL added): every condition says it was derived from generation 2,
    # none of them transitions.
    edited = decide(replace(inputs(dump_status(oom.status), None,
                                   runPolicy={"ttlSecondsAfterFinished": 600}),
                            generation=2, now=NOW + timedelta(minutes=3)))  # fmt: skip
    assert [c[:3] for c in conds(edited)] == [c[:3] for c in conds(oom)]
    assert {c.observed_generation for c in edited.status.conditions} == {2}
    assert [c.last_transition_time for c in edited.status.conditions] == [
        c.last_transition_time for c in oom.status.conditions
    ]
    assert kstatus_of(edited, generation=2) == "Failed"
    assert kstatus_of(oom, generation=2) == "InProgress"  # not yet observed


def test_suspended_is_neither_ready_nor_reconciling_and_a_conflict_stalls() -> None:
    running = step(decide(inputs(None, None)), RUNNING, 1)
    suspended = step(running, RUNNING, 2, runPolicy={"suspend": True})
    assert [c for c in conds(suspended) if c[0] in ("Ready", "Reconciling", "Suspended")] == [
        ("Ready", "False", "Suspended", 1),
        ("Reconciling", "False", "Suspended", 1),
        ("Suspended", "True", "Suspended", 1),
    ]
    assert kstatus_of(suspended) == "InProgress"  # Ready False: not done, not failed

    taken = replace(inputs(dump_status(running.status), None), conflict="Job x is not ours")
    conflict = decide(taken)
    summary = [c for c in conds(conflict) if c[0] in ("Ready", "Reconciling", "Stalled")]
    assert summary == [
        ("Ready", "False", "ChildConflict", 1),
        ("Reconciling", "False", "ChildConflict", 1),
        ("Stalled", "True", "ChildConflict", 1),
    ]
    assert kstatus_of(conflict) == "Failed"
    resolved = step(conflict, RUNNING, 3)
    summary = [c for c in conds(resolved) if c[0] in ("Ready", "Reconciling", "Stalled")]
    assert summary == [
        ("Ready", "False", "PodsRunning", 1),
        ("Reconciling", "True", "PodsRunning", 1),
        ("Stalled", "False", "PodsRunning", 1),
    ]


def test_a_status_written_by_the_previous_operator_gains_the_new_conditions() -> None:
    """Stored conditions without observedGeneration (and no Ready) still load; the next
    reconcile adds Ready and stamps the generation."""
    old = {
        "phase": "Succeeded", "attempt": 1, "observedGeneration": 1, "message": "done",
        "completionTime": "2026-11-21T00:00:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed",
                        "message": "done", "lastTransitionTime": "2026-11-21T00:00:00Z"}],
    }  # fmt: skip
    plan = decide(inputs(old, None))
    assert plan.status_changed and conds(plan) == [
        ("Succeeded", "True", "Completed", 1),
        ("Ready", "True", "Completed", 1),
    ]
    assert kstatus_of(plan) == "Current"


def test_an_unreadable_condition_is_dropped_alone() -> None:
    """A hand-edited condition with an empty reason (metav1 refuses it) must not reset the
    attempt and restart counters: the next decision would start attempt 1 again."""
    from kubetune_operator.status import load_status

    stored = {
        "phase": "Pending", "attempt": 3, "restarts": 2, "observedGeneration": 1,
        "conditions": [
            {"type": "Created", "status": "True", "reason": "JobCreated", "message": "",
             "lastTransitionTime": "2026-11-21T00:00:00Z"},
            {"type": "Restarting", "status": "True", "reason": "", "message": "by hand"},
        ],
    }  # fmt: skip
    st = load_status(stored)
    assert (st.attempt, st.restarts) == (3, 2)
    assert [c.type for c in st.conditions] == ["Created"]
    assert load_status({"attempt": "three"}).attempt == 0  # the rest unreadable: fresh


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0, "0s"), (44.6, "45s"), (61, "1m01s"), (3599, "59m59s"), (3900, "1h05m"),
     (47 * 3600 + 60, "47h01m"), (3 * 86400 + 7200, "3d2h")],
)  # fmt: skip
def test_eta_is_shown_like_kubectl_shows_ages(seconds: float | None, shown: str) -> None:
    assert eta_display(seconds) == shown


def test_the_printer_columns_read_what_the_operator_writes() -> None:
    """Each column's JSONPath, evaluated (jsonpath-ng, filters included) on a real status."""
    from jsonpath_ng.ext import parse

    retrying = step(step(decide(inputs(None, None)), RUNNING, 1), failing(75), 2)
    retrying.status.progress.eta = eta_display(125)
    obj = {"metadata": {"creationTimestamp": "t"}, "spec": {"distributed": {"nodes": 2}},
           "status": dump_status(retrying.status)}  # fmt: skip
    cols = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    got = {}
    for col in cols:
        path = "$" + col["jsonPath"]
        found = [m.value for m in parse(path).find(obj)]
        got[col["name"]] = (found[0] if found else None, col.get("priority", 0))
    assert got == {
        "Phase": ("Pending", 0), "Progress": ("", 0), "Loss": (None, 0),
        "ETA": ("2m05s", 0), "Nodes": (2, 0), "Restarts": (1, 1),
        "Reason": ("RetryableFailure", 1), "Age": ("t", 0),
    }  # fmt: skip
