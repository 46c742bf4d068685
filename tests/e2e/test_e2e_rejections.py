"""Scenarios 7 and 8: permanent failures end the job at once, with the reason and a message
that says what to fix, and without a retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune_api import constants as c
from tests.support.e2e.world import World
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]
FINANCE = Path(__file__).resolve().parents[2] / "examples" / "data" / "finance_qa" / "train.jsonl"


def _failed_condition(st: dict) -> dict:
    conds = {x["type"]: x for x in st.get("conditions") or []}
    assert conds.get(c.ConditionType.FAILED, {}).get("status") == "True", st
    return conds[c.ConditionType.FAILED]


def test_invalid_spec_creates_nothing(world: World) -> None:
    name = "invalid-spec"
    world.submit(world.load("invalid-spec.yaml", name))
    st = world.wait(name, lambda s: s.get("phase") == c.Phase.FAILED, 120, "Failed")
    cond = _failed_condition(st)
    assert cond["reason"] == c.Reason.INVALID_SPEC, cond
    assert "spec.dataset.format" in cond["message"] and "dpo" in cond["message"], cond
    assert st["phase"] == c.Phase.FAILED and st.get("attempt", 0) == 0, st
    # Nothing was created: no Job, pod, Service or ConfigMap, and no request to create one.
    assert world.children(name) == {kind: [] for kind in world.children(name)}
    for plural in ("jobs", "pods", "services", "configmaps"):
        assert world.posts(plural) == [], plural
    assert world.kubelet.logs() == {}
    warnings = [e for e in world.events(name) if e["reason"] == c.Reason.INVALID_SPEC]
    assert warnings and warnings[0]["type"] == "Warning", world.events(name)
    world.assert_no_canary()


def test_bad_rows_fail_with_line_numbers(world: World) -> None:
    name = "bad-rows"
    lines = FINANCE.read_text().splitlines()[:40]
    lines[2] = '{"question": "What did JPM do?", "answer": '  # line 3: cut-off JSON
    lines[6] = json.dumps({"question": "Where is the answer?", "rationale": "none"})  # line 7
    world.s3_client.put_object(
        Bucket=world.bucket, Key="data/finance_bad.jsonl", Body="\n".join(lines) + "\n"
    )
    world.submit(world.load("bad-rows.yaml", name, METRICS_PORT=free_port()))

    st = world.finished(name)
    cond = _failed_condition(st)
    assert cond["reason"] == c.Reason.BAD_DATA, world.report(name)
    for line in (3, 7):
        assert f"finance_bad.jsonl:{line}" in cond["message"], cond["message"]
    assert st["restarts"] == 0 and st["attempt"] == 1, st
    (pod,) = world.pods_of(name, 1)
    term = world.terminated(pod)
    assert term["exitCode"] == c.ExitCode.BAD_DATA, term
    assert "finance_bad.jsonl:3" in json.loads(term["message"])["message"], term
    assert len(world.posts("jobs")) == 1, "a permanent failure is never retried"
    world.assert_no_canary()
