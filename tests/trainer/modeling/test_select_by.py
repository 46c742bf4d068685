"""evaluation.selectBy picks the kept-best checkpoint and (finalAdapter: best) the final
adapter; earlyStopping.patienceUnit counts evaluations or epochs. Real tiny training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.constants import ExitCode
from kubetune_trainer.engine.callbacks import SelectionEarlyStopping
from kubetune_trainer.engine.main import execute
from tests.support.builders import make_job, prepared


@pytest.fixture(autouse=True)
def _offline(trainer_env: None) -> None:
    """Offline, in the session's model cache, with this test's termination log."""


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "report" / "metrics.jsonl").read_text()
    return [json.loads(x) for x in text.splitlines()]


def _run(tmp_path: Path, **spec: Any) -> Any:
    job = make_job(tmp_path / "out", dataset={"packing": "none"}, **spec)
    code, result = execute(job, prepared=prepared(48, 12), say=lambda s: None)
    assert code == 0 and result is not None
    return result


# 48 examples, 4 a batch: 12 steps an epoch. A learning rate of 1e-7 leaves the eval loss
# flat, so with minDelta 0.01 no evaluation after the first one counts as an improvement.
@pytest.mark.parametrize(
    ("eval_steps", "patience", "unit", "stop_step"),
    [
        (3, 2, "evaluations", 9),  # best at step 3; two evaluations later (6, 9) it stops
        (3, 1, "epochs", 15),  # best at epoch 0.25; one epoch later is step 15
        (None, 1, "epochs", 24),  # evaluations at each epoch end: 12 (best), 24
    ],
)
def test_patience_counts_evaluations_or_epochs(
    tmp_path: Path, eval_steps: int | None, patience: int, unit: str, stop_step: int
) -> None:
    training = {
        "epochs": 3,
        "maxSteps": None,
        "learningRate": 1e-7,
        "evalSteps": eval_steps,
        "earlyStopping": {"patience": patience, "minDelta": 0.01, "patienceUnit": unit},
    }
    result = _run(tmp_path, training=training)
    assert result.steps == stop_step
    evals = [r["step"] for r in _rows(Path(result.run_uri)) if "eval_loss" in r]
    assert evals[-1] == stop_step and max(evals) == stop_step


@pytest.mark.parametrize("metric", ["rougeL", "exact_match"])
def test_select_by_keeps_that_best_and_makes_it_the_final_adapter(
    tmp_path: Path, metric: str
) -> None:
    from safetensors.torch import load_file

    result = _run(
        tmp_path,
        training={"maxSteps": 12, "evalSteps": 3, "keepLastCheckpoints": 1},
        evaluation={"enabled": False, "selectBy": metric, "finalAdapter": "best",
                    "maxSamples": 4, "generation": {"maxNewTokens": 8}},
    )  # fmt: skip
    run_dir = Path(result.run_uri)
    evals: dict[int, dict[str, Any]] = {}
    for r in _rows(run_dir):  # the evaluation during training (not the final re-evaluation)
        if "eval_loss" in r:
            evals.setdefault(r["step"], r)
    assert sorted(evals) == [3, 6, 9, 12]
    value = {s: r[f"eval_{metric}"] for s, r in evals.items()}  # measured at every evaluation
    best = max(value, key=lambda s: (value[s], -s))  # the first of equals, as the Trainer
    if metric == "exact_match":
        # The tiny model answers no example word for word after 12 steps: the first
        # evaluation stays the best by exact match, while the eval loss goes on falling.
        assert set(value.values()) == {0.0} and best == 3
        assert min(evals, key=lambda s: evals[s]["eval_loss"]) != 3
    kept = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").iterdir())
    assert best in kept and 12 in kept  # the best survives keepLastCheckpoints 1
    assert set(kept) <= {best, 12}
    final = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    ckpt = load_file(str(run_dir / "checkpoints" / f"step-{best:06d}" /
                         "adapter_model.safetensors"))  # fmt: skip
    assert final.keys() == ckpt.keys()
    assert all((final[k] == ckpt[k]).all() for k in final)  # the final adapter is that best


def test_a_metric_the_format_does_not_measure_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path / "out", evaluation={"selectBy": "direction_accuracy"},
                   training={"evalSteps": 2})  # fmt: skip
    code, result = execute(job, prepared=prepared(48, 12), say=lambda s: None)
    assert code == ExitCode.INVALID_SPEC and result is None
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert (
        "evaluation.selectBy 'direction_accuracy' is not measured for dataset format 'qa'"
        in (summary["message"])
    )
    assert "rougeL" in summary["message"] and "exact_match" in summary["message"]


def test_min_delta_and_direction() -> None:
    rows = [{"step": s, "epoch": s / 4, "eval_x": v} for s, v in [(1, 0.5), (2, 0.55), (3, 0.56)]]
    higher = SelectionEarlyStopping("eval_x", True, 1, 0.02, "evaluations")
    assert higher.since_best(rows) == (1, 0.25)  # 0.55 counts (> 0.52), 0.56 does not
    lower = SelectionEarlyStopping("eval_x", False, 1, 0.0, "epochs")
    assert lower.since_best(rows) == (2, 0.5)  # higher values are worse: step 1 stays best


@pytest.mark.parametrize(
    ("training", "evaluation", "has_validation", "fragment"),
    [
        ({"saveSteps": 5, "evalSteps": 2}, {"finalAdapter": "best"}, True,
         "spec.training.saveSteps 5: with finalAdapter best or earlyStopping"),
        ({"saveSteps": 4}, {"finalAdapter": "best"}, True, "set training.evalSteps to a divisor"),
        ({}, {"finalAdapter": "best"}, False, "evaluation.finalAdapter: best needs validation"),
    ],
)  # fmt: skip
def test_final_adapter_best_needs_saved_evaluations(
    tmp_path: Path, training: dict, evaluation: dict, has_validation: bool, fragment: str
) -> None:
    from kubetune_trainer.engine.args import training_kwargs
    from kubetune_trainer.errors import ConfigError

    job = make_job(tmp_path, training=training, evaluation=evaluation)
    with pytest.raises(ConfigError, match=fragment):
        training_kwargs(job, tmp_path, "fp32", False, has_validation)
    ok = make_job(tmp_path, training={"saveSteps": 4, "evalSteps": 2}, evaluation=evaluation)
    kw = training_kwargs(ok, tmp_path, "fp32", False, True)
    assert kw["load_best_model_at_end"] and kw["save_steps"] == 4
