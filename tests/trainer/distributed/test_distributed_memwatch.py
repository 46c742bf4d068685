"""The memory watch across ranks (gloo, 2 pods x 1 process through `kubetune launch`): only
rank 1 runs over its (artificially low) limit, yet both ranks switch gradient checkpointing
on at the same step end, and the loss curve still matches one process with the same global
batch (checkpointing recomputes; it does not change the math)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune_trainer.engine.memwatch import INTERVAL_ENV, LIMIT_ENV
from tests.support.trainer.distributed import (
    Procs,
    assert_same_curve,
    launch_nodes,
    losses,
    run_dir,
    spec,
    wait_ok,
    write_data,
)

pytestmark = pytest.mark.slow


def test_one_ranks_pressure_makes_every_rank_react_at_the_same_step(
    reference: Path, tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    manifest = spec(write_data(tmp_path / "data.jsonl"), "s3://kubetune-test/runs", nodes=2)
    tight = {LIMIT_ENV: str(64 * 1024 * 1024), INTERVAL_ENV: "0.05"}
    nodes = launch_nodes(procs, tmp_path, manifest, base_env, port, output=out,
                         node_extra=[{}, tight])  # fmt: skip
    wait_ok(nodes, tmp_path)
    assert_same_curve(losses(out), losses(reference))
    report = json.loads((run_dir(out) / "report" / "report.json").read_text())
    mem = report["memory"]
    # Rank 0 (the report's writer) was under its limit, and reacted with rank 1.
    assert mem["warnings"] == 0
    # Step 1: checkpointing on. Rank 1 stays over its limit: one more reaction at most (no
    # live change left), not one per step.
    first, *rest = [(r["step"], r["action"]) for r in mem["reactions"]]
    assert first == (1, "gradient checkpointing turned on")
    assert len(rest) <= 1
    assert all(a == "no live change (gradient checkpointing is on already)" for _, a in rest)
    assert mem["recommendation"] is None  # micro batch 1: nothing to halve
    logs = [(tmp_path / f"node{i}.log").read_text() for i in range(2)]
    assert "memory above 80% at step 1: gradient checkpointing turned on" in logs[1]
