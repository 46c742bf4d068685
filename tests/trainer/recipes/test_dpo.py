"""DPO through the real engine: the reference is the adapter-disabled policy (first loss
is ln 2 for sigmoid, 1 for hinge and IPO; no ref_model, no "ref" adapter), held-out
preference accuracy rises, 4-bit bases train 4-bit layers, no adapter copy is saved; the
spec's loss variants map onto TRL's DPOConfig."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.engine.args import training_kwargs
from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import load_all
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.evaluation.preference import preference_accuracy
from kubetune_trainer.recipes import dpo
from kubetune_trainer.recipes.base import RecipeContext
from kubetune_trainer.records import PreparedDataset
from tests.support.trainer.preference import (
    SUFFIXES,
    pairs,
    preference_job,
    prepared_dpo,
    tiny_base,
)


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
    # evaluation on: base and tuned held-out preference accuracy go into the report.
    job = preference_job(str(tmp_path), "dpo", model={"base": base}, evaluation={"enabled": True},
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

    # TRL's reward metrics reach metrics.jsonl: every train row and every eval row.
    train_rows, eval_rows = [r for r in rows if "loss" in r], [r for r in rows if "eval_loss" in r]
    assert train_rows and eval_rows
    for r in train_rows:
        assert 0 <= r["rewards/accuracies"] <= 1 and isinstance(r["rewards/margins"], float)
    for r in eval_rows:
        assert 0 <= r["eval_rewards/accuracies"] <= 1 and "eval_rewards/margins" in r
        assert "eval_perplexity" not in r  # a DPO loss is no language-model loss
    assert train_rows[0]["rewards/margins"] == 0.0  # policy == reference at the first step
    assert train_rows[-1]["rewards/margins"] > 0  # then chosen pulls away from rejected
    # The report: the final values, the held-out accuracy before and after, no perplexity.
    report = json.loads((Path(res.run_uri) / "report" / "report.json").read_text())
    results = report["results"]
    assert results["eval_rewards/accuracies"] == eval_rows[-1]["eval_rewards/accuracies"]
    assert results["rewards/margins"] == train_rows[-1]["rewards/margins"]
    assert results["base_preference_accuracy"] == pytest.approx(before)
    assert results["tuned_preference_accuracy"] == pytest.approx(after)
    assert results["tuned_preference_accuracy"] > results["base_preference_accuracy"]
    assert not {"base_perplexity", "tuned_perplexity"} & results.keys()
    assert report["hyperparameters"]["dpo_beta"] == 0.1
    assert report["hyperparameters"]["dpo_loss_type"] == "sigmoid"
    md = (Path(res.run_uri) / "report" / "report.md").read_text()
    assert "| | eval loss | preference accuracy |" in md and "perplexity" not in md


def test_dpo_counts_the_pairs_max_seq_length_cuts(tmp_path: Path) -> None:
    # Prompt ~23 tokens, answers ~10: a pair fits in 48. A long answer (~60) is cut; a long
    # prompt (~120) leaves no room for an answer and TRL leaves the pair out.
    more = " and the red car is fine" * 6
    train, val = pairs(10, 1, SUFFIXES[0], SUFFIXES[1]), pairs(4, 2, SUFFIXES[0], SUFFIXES[1])
    for r in train[:2] + val[:1]:
        r["chosen"] += more  # counted once:
    train[1]["rejected"] += more  # both answers of this pair are cut
    train[2]["rejected"] += more
    for r in train[3:5]:
        r["prompt"] += " Tell me about the red car." * 12
    prepared = PreparedDataset("preference", "preference", train, val, "t")
    job = preference_job(str(tmp_path), "dpo", model={"base": tiny_base()},
                   dataset={"maxSeqLength": 48}, training={"maxSteps": 1})  # fmt: skip
    said: list[str] = []
    code, res = execute(job, prepared=prepared, say=said.append)
    assert code == 0 and res is not None
    assert (
        f"truncated: 3 of 8 training pairs longer than maxSeqLength 48 (1 of 4 validation); "
        f"{dpo.DPO_TRUNCATION}; 2 pairs left out entirely (the prompt alone fills maxSeqLength)"
    ) in said
    cut = res.report["data"]["truncated"]
    assert (cut["train"], cut["train_total"], cut["validation"], cut["dropped"]) == (3, 8, 1, 2)
    assert prepared.stats.truncated == 4


def test_dpo_on_4bit_base(tmp_path: Path) -> None:
    base = tiny_base()
    good, bad, _ = _oriented(base)
    job = preference_job(str(tmp_path), "dpo", model={"base": base}, quantization={"mode": "4bit"},
                   training={"maxSteps": 8, "dpo": {"beta": 0.5, "lossType": "ipo"}})  # fmt: skip
    said: list[str] = []
    code, res = execute(job, prepared=prepared_dpo(good, bad, n=16), say=said.append)
    assert code == 0 and res is not None
    # The model that trained holds bitsandbytes 4-bit layers (engine/setup.py's summary).
    summary = [line for line in said if line.startswith("architecture: ")]
    assert len(summary) == 1 and "Linear4bit" in summary[0], summary
    losses = [r["loss"] for r in _logged(res.run_uri) if "loss" in r]
    # IPO: (log-ratio margin - 1/(2 beta))^2 = (0 - 1)^2 at the start, then it falls.
    assert losses[0] == pytest.approx(1.0, abs=1e-2)
    assert min(losses[-3:]) < losses[0]
    assert res.adapter.size > 0 and not (Path(res.adapter.uri) / "ref").exists()


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_dpo_args_map_every_loss_variant(loss_type: str, tmp_path: Path) -> None:
    from trl import DPOConfig

    job = preference_job(
        str(tmp_path), "dpo", training={"dpo": {"beta": 0.25, "lossType": loss_type}}
    )
    kwargs = training_kwargs(job, tmp_path / "staging", "fp32", False, True)
    args = dpo.dpo_args(RecipeContext(job, None, None, None, kwargs))  # type: ignore[arg-type]
    assert args["beta"] == 0.25 and args["loss_type"] == [loss_type]
    assert args["max_length"] == 64 and args["learning_rate"] == 0.01  # engine's keywords kept
    # A label-flip rate only for robust (elsewhere TRL would read it as conservative DPO).
    assert ("label_smoothing" in args) == (loss_type == "robust")
    config = DPOConfig(**args)  # TRL accepts the mapping as it is
    assert config.loss_type == [loss_type] and config.beta == 0.25
    assert config.label_smoothing == (dpo.ROBUST_LABEL_SMOOTHING if loss_type == "robust" else 0)


def test_dpo_reference_is_the_disabled_adapter_hinge_starts_at_one(tmp_path: Path) -> None:
    job = preference_job(str(tmp_path), "dpo", model={"base": tiny_base()},
                   training={"maxSteps": 2, "dpo": {"beta": 0.1, "lossType": "hinge"}})  # fmt: skip
    prepared = prepared_dpo(SUFFIXES[0], SUFFIXES[1], n=8)
    loaded = load_all(job, prepared, say=lambda s: None)
    # The trainer as engine/run.py builds it: no reference model, no copy of the adapter.
    kwargs = training_kwargs(job, tmp_path / "staging", loaded.precision, False, True)
    ctx = RecipeContext(job, loaded.model, loaded.tokenizer, prepared, kwargs, [], loaded.precision)
    trainer = dpo.build_trainer(ctx).trainer
    assert trainer.ref_model is None and trainer.model is loaded.model
    assert list(trainer.model.peft_config) == ["default"]
    assert not [n for n, _ in trainer.model.named_parameters() if ".ref." in n]
    # Policy == reference at step 1 (B = 0): hinge = relu(1 - beta * 0) = 1 (TRL's definition).
    code, res = execute(job, prepared=prepared, say=lambda s: None, loaded=loaded)
    assert code == 0 and res is not None
    losses = [r["loss"] for r in _logged(res.run_uri) if "loss" in r]
    assert len(losses) == 2 and losses[0] == pytest.approx(1.0, abs=1e-5), losses
