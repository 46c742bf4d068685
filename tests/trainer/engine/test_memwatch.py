"""Memory while training, on real tiny runs: the memory is logged at each major operation;
above the threshold (an artificially low KUBETUNE_MEMORY_LIMIT_BYTES over the real reading)
the run switches gradient checkpointing on at the next step end, with the same losses as a
run without the reaction; when it is on already, nothing changes live and the report
recommends half the micro batch with twice the accumulation. The report lists the bytes
each technique saves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.memwatch import INTERVAL_ENV, LIMIT_ENV, MemoryWatch, Reading
from tests.support.builders import make_job, prepared, train_losses


class Checkpointed(TrainerCallback):
    """Whether the decoder layers ran with gradient checkpointing, step by step."""

    def __init__(self) -> None:
        self.by_step: dict[int, bool] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        layers = kw["model"].get_base_model().model.layers
        self.by_step[state.global_step + 1] = all(x.gradient_checkpointing for x in layers)
        return control


def test_above_the_threshold_gradient_checkpointing_turns_on(tmp_path: Path, monkeypatch) -> None:
    short = {"training": {"maxSteps": 6}}
    calm_job = make_job(tmp_path, name="calm", **short)
    code, calm = execute(calm_job, prepared=prepared(), say=lambda s: None)
    assert code == 0 and calm is not None
    assert calm.report["memory"]["reactions"] == [] and calm.report["memory"]["warnings"] == 0

    monkeypatch.setenv(LIMIT_ENV, str(64 * 1024 * 1024))  # far below this process's RSS
    said: list[str] = []
    seen = Checkpointed()
    job = make_job(tmp_path, name="tight", **short)
    code, res = execute(job, prepared=prepared(), say=said.append, extra_callbacks=[seen])
    assert code == 0 and res is not None
    mem = res.report["memory"]
    # Logged at each major operation.
    ops = [m["op"] for m in mem["marks"]]
    assert ops[0] == "load (LoRA attached)"
    # The base is evaluated after training (the second eval).
    assert ops[1:] == ["first step", "eval", "checkpoint", "eval", "export (adapter saved)"], ops
    assert any(s.startswith("memory at first step: ") for s in said)
    # The reaction: at the first step end, live, and from then on the layers checkpoint.
    assert mem["warnings"] >= 1
    assert mem["reactions"][0] == {**mem["reactions"][0], "step": 1,
                                   "action": "gradient checkpointing turned on"}  # fmt: skip
    assert seen.by_step[1] is False and all(seen.by_step[s] for s in range(2, 7))
    # Same math: the losses match the run without the reaction.
    a, b = train_losses(Path(calm.run_uri)), train_losses(Path(res.run_uri))
    assert a.keys() == b.keys() and all(abs(a[s] - b[s]) < 1e-4 for s in a)
    # Bytes saved by each technique, now with gradient checkpointing (the reaction's).
    assert set(mem["savings_bytes"]) == {"gradient_checkpointing", "lora"}
    assert set(calm.report["memory"]["savings_bytes"]) == {"lora"}
    assert all(v > 0 for v in mem["savings_bytes"].values())
    md = (Path(res.run_uri) / "report" / "report.md").read_text()
    assert "## Memory during training" in md and "gradient checkpointing turned on" in md
    assert "- lora: " in md


def test_with_checkpointing_on_already_the_reaction_is_a_recommendation(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(LIMIT_ENV, str(64 * 1024 * 1024))
    job = make_job(
        tmp_path, name="gc", training={"maxSteps": 3, "gradientCheckpointing": "on"},
        quantization={"mode": "4bit"},
    )  # fmt: skip
    code, res = execute(job, prepared=prepared(), say=lambda s: None)
    assert code == 0 and res is not None
    mem = res.report["memory"]
    assert mem["marks"][0]["op"] == "load (quantized to 4bit, LoRA attached)"
    assert mem["reactions"][0]["action"].startswith("no live change (gradient checkpointing")
    assert mem["recommendation"].startswith(
        "set training.microBatchSize 2 and training.gradientAccumulation 2"
    )
    assert set(mem["savings_bytes"]) == {"quantization_4bit", "gradient_checkpointing", "lora"}


def test_the_sampler_flags_pressure_between_marks(monkeypatch) -> None:
    """The sampler thread alone (no mark) sees the reading cross the threshold."""
    monkeypatch.setenv(INTERVAL_ENV, "0.01")
    used = [10]
    job = make_job(Path("/tmp"), name="s")
    watch = MemoryWatch(job, None, "cpu", print, read=lambda: Reading(used[0], 100, "test"))

    class Args:
        gradient_checkpointing = False

    watch.on_train_begin(Args(), None, None)
    try:
        time.sleep(0.1)
        assert not watch.pressure and watch.peak is not None and watch.peak.used == 10
        used[0] = 81
        deadline = time.monotonic() + 5
        while not watch.pressure and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watch.pressure and watch.warnings == 1 and watch.peak.used == 81
    finally:
        watch.stop()
    assert watch.marks == []
