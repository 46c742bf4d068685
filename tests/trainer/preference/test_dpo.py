"""DPO through the real engine: the reference is the adapter-disabled policy (first loss
is ln 2), held-out preference accuracy rises, 4-bit bases work, no adapter copy is saved."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from kt_pref_data import SUFFIXES, make_job, pairs, prepared_dpo, tiny_base

from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.engine.main import execute
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.evaluation.preference import preference_accuracy


def _accuracy(lm, records) -> float:  # type: ignore[no-untyped-def]
    rendered = [render_prompt(r["prompt"], lm.tokenizer) for r in records]
    return preference_accuracy(lm.model, lm.tokenizer, records, rendered)["preference_accuracy"]


def _logged(run_uri: str) -> list[dict]:
    lines = (Path(run_uri) / "report" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def _oriented(base: str) -> tuple[str, str, float]:
    """(preferred, rejected) suffixes chosen so the untrained base gets them wrong."""
    lm = load_model(base)
    a, b = SUFFIXES[0], SUFFIXES[1]
    acc = _accuracy(lm, pairs(16, 2, a, b))
    return (a, b, acc) if acc <= 0.5 else (b, a, 1 - acc)


def test_dpo_learns_heldout_preferences(tmp_path: Path) -> None:
    base = tiny_base()
    good, bad, before = _oriented(base)
    assert before <= 0.5
    job = make_job(str(tmp_path), "dpo", model={"base": base},
                   training={"maxSteps": 12, "learningRate": 0.02,
                             "dpo": {"beta": 0.1, "lossType": "sigmoid"}})  # fmt: skip
    prepared = prepared_dpo(good, bad, n=24)
    code, res = execute(job, prepared=prepared, say=lambda s: None)
    assert code == 0 and res is not None
    rows = _logged(res.run_uri)
    losses = [r["loss"] for r in rows if "loss" in r]
    # Policy == reference at step 1 (the adapter starts at zero): -log sigmoid(0) = ln 2.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    assert min(losses[-3:]) < losses[0] - 0.05
    after = _accuracy(load_model(None, res.adapter.uri), prepared.validation)
    print(f"held-out preference accuracy: base {before:.2f} -> tuned {after:.2f}")
    assert after >= 0.9 and after >= before + 0.4, (before, after)
    # Only the trained adapter is saved (no reference copy), with the engine's report.
    adapter = Path(res.adapter.uri)
    assert not (adapter / "ref").exists()
    assert res.report["objective"] == "dpo"
    assert res.tuned_eval_loss < res.base_eval_loss  # eval: DPO loss on held-out pairs


def test_dpo_on_4bit_base(tmp_path: Path) -> None:
    base = tiny_base()
    good, bad, _ = _oriented(base)
    job = make_job(str(tmp_path), "dpo", model={"base": base}, quantization={"mode": "4bit"},
                   training={"maxSteps": 8, "dpo": {"beta": 0.5, "lossType": "ipo"}})  # fmt: skip
    code, res = execute(job, prepared=prepared_dpo(good, bad, n=16), say=lambda s: None)
    assert code == 0 and res is not None
    assert res.report["hyperparameters"]["quantization"] == "4bit"
    losses = [r["loss"] for r in _logged(res.run_uri) if "loss" in r]
    # IPO: (log-ratio margin - 1/(2 beta))^2 = (0 - 1)^2 at the start, then it falls.
    assert losses[0] == pytest.approx(1.0, abs=1e-2)
    assert min(losses[-3:]) < losses[0]
    assert res.adapter.size > 0 and not (Path(res.adapter.uri) / "ref").exists()
