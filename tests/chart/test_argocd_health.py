"""The Argo CD health check (deploy/argocd/health.lua) run by real Lua interpreters — Lua 5.1
(Argo CD's gopher-lua implements 5.1) and 5.4 — over FineTuneJobs whose status is built with
the API's own pydantic models, and over hand-written statuses other tools could leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_api.constants import ConditionType, Phase, Reason
from kubetune_api.status import AdapterArtifact, Condition, FineTuneJobStatus, Progress
from tests.support.chart.helpers import REPO, run

HEALTH = REPO / "deploy/argocd/health.lua"
ARGOCD_CM = REPO / "deploy/argocd/argocd-cm.yaml"


def lua_literal(value: Any) -> str:
    """A Python value as a Lua table constructor (what Argo CD hands the script as `obj`)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (\" \\ \n \t) are valid Lua escapes; keep non-ASCII as UTF-8.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(type(value))


def health(lua: str, tmp_path: Path, obj: dict[str, Any]) -> tuple[str, str]:
    script = tmp_path / "run.lua"
    script.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({json.dumps(str(HEALTH))})\n"
        'io.write(hs.status, "\\n", hs.message or "", "\\n")\n'
    )
    status, message = run([lua, str(script)]).stdout.split("\n", 1)
    return status, message.rstrip("\n")


def ftj(status: FineTuneJobStatus | None, *, suspend: bool = False, generation: int = 1) -> dict:
    obj: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "demo", "namespace": "ml", "generation": generation},
        "spec": {"model": {"name": "tiny"}, "runPolicy": {"suspend": suspend}},
    }
    if status is not None:
        obj["status"] = status.model_dump(by_alias=True, exclude_none=True)
    return obj


def running(**kw: Any) -> FineTuneJobStatus:
    return FineTuneJobStatus(
        phase=Phase.RUNNING,
        observed_generation=1,
        progress=Progress(step=40, total_steps=100, display="40/100 (40%)"),
        **kw,
    )


def failed_with(condition: dict[str, Any], message: str = "") -> dict:
    """A Failed FineTuneJob whose Failed condition is `condition` as written (maybe partial)."""
    obj = ftj(FineTuneJobStatus(phase=Phase.FAILED, observed_generation=1, message=message))
    obj["status"]["conditions"] = [condition]
    return obj


CASES = [
    ("new", ftj(None), "Progressing", "Waiting for the kubetune operator"),
    ("new-suspended", ftj(None, suspend=True), "Suspended", "Suspended before it started"),
    ("pending", ftj(FineTuneJobStatus(observed_generation=1)), "Progressing", "Pending"),
    ("running", ftj(running()), "Progressing", "Running 40/100 (40%)"),
    (
        "succeeded",
        ftj(
            FineTuneJobStatus(
                phase=Phase.SUCCEEDED,
                observed_generation=1,
                adapter=AdapterArtifact(uri="s3://bucket/ml/demo/adapter/"),
            )
        ),
        "Healthy",
        "Adapter at s3://bucket/ml/demo/adapter/",
    ),
    (
        "failed",
        ftj(
            FineTuneJobStatus(
                phase=Phase.FAILED,
                observed_generation=1,
                conditions=[
                    Condition(type=ConditionType.RUNNING, status="False", reason="Stopped"),
                    Condition(
                        type=ConditionType.FAILED,
                        status="True",
                        reason=Reason.OUT_OF_MEMORY,
                        message="needs ~21 GiB per GPU; try quantization: 4bit",
                    ),
                ],
            )
        ),
        "Degraded",
        "OutOfMemory: needs ~21 GiB per GPU; try quantization: 4bit",
    ),
    (
        "failed-without-condition",
        ftj(FineTuneJobStatus(phase=Phase.FAILED, message='bad "data" ✗')),
        "Degraded",
        'bad "data" ✗',
    ),
    # Another controller or a hand edit can leave a Failed condition without a reason (or
    # with nothing at all): still Degraded with what there is, never a Lua error.
    (
        "failed-condition-without-reason",
        failed_with({"type": "Failed", "status": "True", "message": "node lost"}),
        "Degraded",
        "node lost",
    ),
    (
        "failed-condition-with-empty-reason",
        failed_with({"type": "Failed", "status": "True", "reason": "", "message": "node lost"}),
        "Degraded",
        "node lost",
    ),
    (
        "failed-condition-reason-only",
        failed_with({"type": "Failed", "status": "True", "reason": "BadData"}),
        "Degraded",
        "BadData",
    ),
    (
        "failed-condition-empty",
        failed_with({"type": "Failed", "status": "True"}, message="training failed at step 3"),
        "Degraded",
        "training failed at step 3",
    ),
    (
        "failed-nothing-at-all",
        failed_with({"type": "Failed", "status": "True"}),
        "Degraded",
        "Training failed",
    ),
    (
        "suspended-phase",
        ftj(FineTuneJobStatus(phase=Phase.SUSPENDED, observed_generation=1), suspend=True),
        "Suspended",
        "Suspended: pods stopped, checkpoints kept",
    ),
    # suspend was just set; the operator has not reacted: still Suspended for Argo CD.
    (
        "suspend-requested",
        ftj(running(), suspend=True),
        "Suspended",
        "Suspended: pods stopped, checkpoints kept",
    ),
    (
        "spec-not-observed",
        ftj(running(), generation=2),
        "Progressing",
        "Waiting for the operator to act on generation 2",
    ),
]


@pytest.mark.parametrize(("obj", "want_status", "want_message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_health(lua: str, tmp_path: Path, obj: dict, want_status: str, want_message: str) -> None:
    assert health(lua, tmp_path, obj) == (want_status, want_message)


# (phase, reason, Argo CD health, the kstatus condition that is True) as the operator writes them.
OPERATOR_STATES = [
    (Phase.PENDING, Reason.JOB_CREATED, "Progressing", ConditionType.RECONCILING),
    (Phase.RUNNING, Reason.PODS_RUNNING, "Progressing", ConditionType.RECONCILING),
    (Phase.SUCCEEDED, Reason.COMPLETED, "Healthy", ConditionType.READY),
    (Phase.FAILED, Reason.OUT_OF_MEMORY, "Degraded", ConditionType.STALLED),
    (Phase.SUSPENDED, Reason.SUSPENDED, "Suspended", None),
]


@pytest.mark.parametrize(("phase", "reason", "want", "true"), OPERATOR_STATES,
                         ids=[s[0] for s in OPERATOR_STATES])  # fmt: skip
def test_argocd_and_kstatus_agree_on_the_operators_own_conditions(
    lua: str, tmp_path: Path, phase: str, reason: str, want: str, true: str | None
) -> None:
    """Conditions as the operator's pure status code leaves them (metav1 shape with
    observedGeneration, plus Ready/Reconciling/Stalled): Argo CD's verdict matches the
    kstatus condition that is True."""
    from datetime import UTC, datetime

    from kubetune_operator.status import set_phase, summarize

    now = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    st = FineTuneJobStatus(observed_generation=2)
    set_phase(st, Phase.PENDING, Reason.JOB_CREATED, "created Job demo-a1", now)
    set_phase(st, phase, reason, f"now {phase}", now)
    summarize(st, 2, now)
    summary = {c.type: c.status for c in st.conditions if c.type in ("Ready", "Reconciling",
                                                                      "Stalled")}  # fmt: skip
    assert [t for t, v in summary.items() if v == "True"] == ([true] if true else [])
    status, message = health(lua, tmp_path, ftj(st, generation=2))
    assert status == want
    if phase == Phase.FAILED:
        assert message == f"{reason}: now {phase}"


def test_every_phase_has_a_health(lua: str, tmp_path: Path) -> None:
    seen = {
        health(lua, tmp_path, ftj(FineTuneJobStatus(phase=p, observed_generation=1)))[0]
        for p in Phase.ALL
    }
    assert seen == {"Healthy", "Degraded", "Suspended", "Progressing"}


def test_argocd_cm_carries_the_same_script() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    script = cm["data"]["resource.customizations.health.kubetune.io_FineTuneJob"]
    assert script == HEALTH.read_text()


def test_the_interpreter_is_the_lua_it_is_named_after(lua: str, tmp_path: Path) -> None:
    """lua5.1 really runs Lua 5.1 (Argo CD's semantics): a 5.4 fallback would prove nothing."""
    script = tmp_path / "version.lua"
    script.write_text("io.write(_VERSION)")
    assert run([lua, str(script)]).stdout == "Lua " + Path(lua).name.removeprefix("lua")
