"""ETA from the start: a real tiny run logs and exports (Prometheus) an estimate before
its first step, refines it after the warm-up steps, and its report compares both with the
actual training time; a resumed attempt starts from the earlier attempt's measured speed."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from transformers import TrainerCallback

from kubetune_trainer.engine import eta as eta_mod
from kubetune_trainer.engine.main import execute
from tests.support.builders import make_job, prepared
from tests.support.net import free_port


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
    }  # fmt: skip


class ScrapeAtBegin(TrainerCallback):
    """Runs after the engine's callbacks: what /metrics shows before step 1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.seen = scrape(self.port)
        self.seen["global_step"] = state.global_step
        return control


def test_eta_before_the_first_step_refined_and_reported(tmp_path: Path, monkeypatch) -> None:
    port = free_port()
    monkeypatch.setenv("KUBETUNE_METRICS_PORT", str(port))
    said: list[str] = []
    probe = ScrapeAtBegin(port)
    job = make_job(tmp_path, name="eta", training={"maxSteps": 12})
    code, res = execute(job, prepared=prepared(), say=said.append, extra_callbacks=[probe])
    assert code == 0 and res is not None
    # Exported before the first step: the gauge the operator reads for etaSeconds.
    assert probe.seen["global_step"] == 0
    assert probe.seen["kubetune_train_eta_seconds"] > 0
    assert probe.seen["kubetune_train_total_steps"] == 12
    # Logged before the first step, then refined after the warm-up.
    start = next(i for i, s in enumerate(said) if s.startswith("ETA at start:"))
    refined = next(i for i, s in enumerate(said) if s.startswith("ETA after 4 steps:"))
    assert start < refined
    assert "12 steps" in said[start] and "estimated (" in said[start]
    eta = res.report["eta"]
    assert eta["start"]["steps"] == 12 and eta["start"]["tokens"] > 0
    assert eta["refined"]["at_step"] == 4 and eta["refined"]["seconds_left"] > 0
    assert eta["actual_seconds"] == res.report["training_seconds"]
    assert eta["refined"]["actual_seconds_left"] > 0  # the arithmetic: the test below
    md = (Path(res.run_uri) / "report" / "report.md").read_text()
    assert "## Estimated vs actual training time" in md and "after warm-up (step 4)" in md
    # The ETA rows go to Prometheus only: metrics.jsonl keeps one row per logging step.
    rows = (Path(res.run_uri) / "report" / "metrics.jsonl").read_text().splitlines()
    train_rows = [r for r in map(json.loads, rows) if "eval_loss" not in r]
    assert [r["step"] for r in train_rows] == list(range(1, 13))
    print(eta)


def test_an_earlier_attempts_measured_speed_is_the_start_throughput(tmp_path: Path) -> None:
    job = make_job(tmp_path, name="m")
    earlier = [{"step": 1, "tokens_per_second": 100.0}, {"step": 2, "tokens_per_second": 300.0}]
    cb = eta_mod.EtaCallback(job, None, "cpu", print, earlier=earlier)

    class Args:
        per_device_train_batch_size, gradient_accumulation_steps, world_size = 4, 2, 1

    class State:
        max_steps, global_step = 10, 2

    plan = cb.plan(Args(), State(), None)  # no tokenized split: maxSeqLength (64) per example
    assert plan.source == "measured (earlier attempt)" and plan.tokens_per_second == 200.0
    assert plan.tokens == 8 * 8 * 64 and plan.seconds == plan.tokens / 200.0


def test_the_refined_eta_is_the_timed_seconds_per_step_times_the_steps_left(
    tmp_path: Path, monkeypatch
) -> None:
    """After WARMUP_STEPS steps timed from the end of the first (its warm-up excluded)."""
    ticks = iter([0.0, 10.0, 12.0, 14.0, 16.0, 30.0])  # train begin, then each step's end
    monkeypatch.setattr(eta_mod.time, "monotonic", lambda: next(ticks))
    said: list[str] = []
    earlier = [{"tokens_per_second": 100.0}]
    cb = eta_mod.EtaCallback(make_job(tmp_path, name="r"), None, "cpu", said.append,
                             earlier=earlier)  # fmt: skip

    class Args:
        per_device_train_batch_size, gradient_accumulation_steps, world_size = 1, 1, 1

    class State:
        max_steps, global_step, epoch, is_world_process_zero = 12, 0, 0.0, True

    cb.on_train_begin(Args(), State(), None)
    for step in range(1, eta_mod.WARMUP_STEPS + 3):
        State.global_step = step
        cb.on_step_end(Args(), State(), None)
    # Steps 2-4 took 2 s each (step 1's 10 s is warm-up): 8 steps left, 16 s.
    assert cb.refined == 16.0 and cb.refined_at == eta_mod.WARMUP_STEPS + 1
    assert any(s.startswith("ETA after 4 steps: ") for s in said)
    out = cb.summary(training_seconds=30.0)
    assert out is not None and out["refined"]["actual_seconds_left"] == 30.0 - 16.0
