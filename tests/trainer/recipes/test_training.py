"""Seeds, early stopping and a real pretrained encoder (MiniLM) with LoRA."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_trainer.engine.main import execute
from kubetune_trainer.records import PreparedDataset
from tests.support.builders import COLORS, make_job, prepared, train_losses


def _run(tmp: Path, name: str, **spec: object) -> tuple[dict[int, float], object]:
    job = make_job(tmp, name=name, **spec)
    code, res = execute(job, prepared=prepared(), say=lambda s: None)
    assert code == 0 and res is not None
    return train_losses(Path(res.run_uri)), res


def test_same_seed_same_losses_other_seed_differs(tmp_path: Path) -> None:
    short = {"training": {"maxSteps": 6}}
    a, _ = _run(tmp_path, "a", **short)
    b, _ = _run(tmp_path, "b", **short)
    c, _ = _run(tmp_path, "c", training={"maxSteps": 6, "seed": 8})
    assert a == b
    assert any(abs(a[s] - c[s]) > 1e-4 for s in a)


def test_early_stopping_stops_and_keeps_the_best(tmp_path: Path) -> None:
    # A learning rate this small cannot move eval loss by min_delta: patience runs out.
    _, res = _run(
        tmp_path,
        "es",
        training={
            "maxSteps": 40,
            "learningRate": 1e-7,
            "evalSteps": 2,
            "saveSteps": 2,
            "earlyStopping": {"patience": 2, "minDelta": 0.05},
            "keepLastCheckpoints": 1,
        },
    )
    assert res.steps == 6  # first eval sets the best, two more without improvement
    evals = [json.loads(x) for x in (Path(res.run_uri) / "report" / "metrics.jsonl")
             .read_text().splitlines() if "eval_loss" in x]  # fmt: skip
    best = min(evals, key=lambda r: r["eval_loss"])["step"]
    best_uri = res.report["results"]["best_checkpoint"]
    assert best_uri == str(Path(res.run_uri) / "checkpoints" / f"step-{best:06d}")
    kept = sorted(p.name for p in (Path(res.run_uri) / "checkpoints").iterdir())
    assert kept == sorted({f"step-{best:06d}", "step-000006"})  # newest + best
    # load_best_model_at_end: the tuned eval loss is the best one, not the last one
    assert res.tuned_eval_loss == min(r["eval_loss"] for r in evals)


def test_minilm_sequence_classification_lora(tmp_path: Path) -> None:
    # Label 1 when the sentence mentions a warm color: learnable from the words.
    warm = {"red", "gold", "pink"}
    rows = [{"text": f"The {c} item is on the table number {i}.", "label": int(c in warm)}
            for i in range(12) for c in COLORS]  # fmt: skip
    prep = PreparedDataset("classification", "classification", rows[:80], rows[80:],
                           "sha256:cls", label_names=["cool", "warm"])  # fmt: skip
    job = make_job(
        tmp_path, name="bert",
        model={"base": "builtin:all-minilm-l6-v2", "task": "sequence_classification",
               "numLabels": 2},
        adapter={"r": 8, "alpha": 16, "targetModules": ["query", "value"],
                 "modulesToSave": ["classifier"]},
        dataset={"packing": "none", "maxSeqLength": 32},
        training={"maxSteps": 20, "microBatchSize": 8, "learningRate": 0.005},
    )  # fmt: skip
    code, res = execute(job, prepared=prep, say=lambda s: None)
    assert code == 0 and res is not None
    losses = train_losses(Path(res.run_uri))
    steps = sorted(losses)
    assert sum(losses[s] for s in steps[-5:]) / 5 < sum(losses[s] for s in steps[:5]) / 5 - 0.1
    assert res.tuned_eval_loss < res.base_eval_loss
    cfg = json.loads((Path(res.adapter.uri) / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"query", "value"}
    assert "classifier" in cfg["modules_to_save"]
