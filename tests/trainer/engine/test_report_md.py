"""report.md says everything report.json measured, why the run stopped, which eval loss is
which, and refuses a base/tuned comparison without enough validation data (issue 26)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubetune_trainer.engine.main import execute
from kubetune_trainer.reporting.report import EVAL_LOSS_NOTE, markdown
from tests.support.builders import make_job, prepared


def _report(res: Any) -> tuple[dict[str, Any], str]:
    folder = Path(res.run_uri) / "report"
    return json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()


def test_one_split_group_gives_no_comparison_and_says_why(tmp_path: Path) -> None:
    rows = [{"question": f"Is the door number {i} red?", "answer": "Yes."} for i in range(24)]
    data = tmp_path / "same.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = make_job(tmp_path / "out", name="onegroup", dataset={"source": str(data)},
                   training={"maxSteps": 2}, evaluation={"enabled": True})  # fmt: skip
    said: list[str] = []
    code, res = execute(job, say=said.append)
    assert code == 0 and res is not None
    note = (
        "validation has 0 example(s), fewer than validation.minExamples 1: every example is "
        "in one split group (identical answers, or a single paper), and a group is never "
        "split; no base/tuned comparison will be made (add data, raise validation.fraction, "
        "or give validation.source)"
    )
    assert f"warning: {note}" in said
    report, md = _report(res)
    assert report["data"]["validation_note"] == note and report["evaluation"] is None
    assert f"**No base/tuned comparison:** {note}." in md
    assert "| tuned |" not in md and "| base (adapter off) |" not in md
    assert "Stopped: reached training.maxSteps 2." in md


def test_stop_reason_train_loss_and_every_result(tmp_path: Path) -> None:
    # As test_training's early-stopping run, logging less often than it trains.
    job = make_job(tmp_path, name="es", training={
        "maxSteps": 40, "learningRate": 1e-7, "evalSteps": 2, "saveSteps": 2,
        "loggingSteps": 50, "earlyStopping": {"patience": 2, "minDelta": 0.05}})  # fmt: skip
    warned: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())  # type: ignore[method-assign]
    callback_log = logging.getLogger("transformers.trainer_callback")
    callback_log.addHandler(handler)
    try:
        code, res = execute(job, prepared=prepared(), say=lambda s: None)
    finally:
        callback_log.removeHandler(handler)
    # The base's evaluation is not a training evaluation: no "early stopping is disabled".
    assert not [w for w in warned if "early stopping is disabled" in w]
    assert code == 0 and res is not None and res.steps == 6
    report, md = _report(res)
    rows = [json.loads(x) for x in (Path(res.run_uri) / "report" / "metrics.jsonl")
            .read_text().splitlines()]  # fmt: skip
    evals = [r for r in rows if "eval_loss" in r]
    best = min(r["eval_loss"] for r in evals)
    seen = ", ".join(f"{r['eval_loss']:.4f} (step {r['step']})" for r in evals[-3:])
    assert (
        f"Stopped: early stopping at step 6 of 40: eval_loss did not improve on the best "
        f"{best:.4f} by minDelta 0.05 for 2 evaluations (patience); last evaluations: {seen}."
    ) in md
    results = report["results"]
    assert results["final_train_loss"] is None
    assert (
        "Final train loss not logged (training.loggingSteps 50 > 6 steps); mean train loss "
        f"over the run {results['mean_train_loss']:.4f}"
    ) in md
    for key in results:  # every figure report.json has
        assert f"- {key}: " in md, key
    assert EVAL_LOSS_NOTE in md


def test_evaluation_metrics_all_shown_and_null_over_zero_examples() -> None:
    metrics = {"loss": 1.5, "rouge_l": 0.25, "recommendation_parse_rate": 0.0,
               "direction_accuracy": None, "direction_examples": 0.0, "brier_score": None,
               "confidence_examples": 0.0}  # fmt: skip
    ev = {"base": {"model": "b", "metrics": metrics}, "tuned": {"model": "t", "metrics": metrics},
          "summary": ""}  # fmt: skip
    report = {"job": {"namespace": "n", "name": "x"}, "status": "succeeded",
              "results": {"steps": 2, "base_eval_loss": 1.4, "tuned_eval_loss": 1.3},
              "evaluation": ev}  # fmt: skip
    md = markdown(report)
    assert "| brier_score | n/a | n/a |  |" in md
    assert "| direction_accuracy | n/a | n/a |  |" in md
    assert "| direction_examples | 0 | 0 |  |" in md
    for name in metrics:
        assert f"| {name} |" in md
    assert json.loads(json.dumps(report))["evaluation"]["base"]["metrics"]["brier_score"] is None
