"""`kubetune run`'s end: the engine calls evaluation.after_training (base vs tuned in the
report) and the registry records the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune_trainer.engine.main import execute
from tests.support.trainer.tiny_lm import finance_job


@pytest.mark.slow
def test_engine_run_reports_base_vs_tuned_and_registers(
    tiny_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    job = finance_job(
        tiny_dirs["data"], str(tiny_dirs["base"]), tmp_path / "out",
        training={"maxSteps": 4, "microBatchSize": 4, "learningRate": 0.01},
        adapter={"r": 4, "targetModules": ["q_proj", "v_proj"]},
    )  # fmt: skip
    said: list[str] = []
    code, res = execute(job, say=said.append)
    assert code == 0 and res is not None
    ev = res.report["evaluation"]
    assert ev["base"]["adapter"] is None and ev["tuned"]["examples_generated"] == 3
    assert "format_compliance" in ev["tuned"]["metrics"]
    assert ev["summary"].splitlines()[0].split() == ["metric", "base", "tuned"]
    entry = json.loads((tmp_path / "out" / "registry" / "fin-tiny" / "v1.json").read_text())
    assert entry["adapter_uri"] == res.adapter.uri
    assert entry["metrics"]["eval/format_compliance"] == ev["tuned"]["metrics"]["format_compliance"]
    assert any(s.startswith("registry: fin-tiny v1") for s in said)
