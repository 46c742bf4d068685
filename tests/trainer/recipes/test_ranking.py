"""Ranking through the real engine: pairwise ordering accuracy on held-out lists rises
from ~0 (the order is set against the untrained base) to ~1; the loss is the margin loss
over length-normalized log-likelihoods, scored by the evaluation's own function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.engine.main import execute
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.evaluation.preference import ordering_accuracy
from kubetune_trainer.recipes.ranking import (
    RANKING_TRUNCATION,
    RankingCollator,
    RankingTrainer,
    pairwise,
)
from tests.support.trainer.preference import (
    SUFFIXES,
    base_scores,
    preference_job,
    prepared_ranked,
    tiny_base,
)


def test_pairwise_margin_loss_by_hand() -> None:
    # One list of 3 (scores 0.5, 0.2, 0.4) and one of 2 (0.0, 0.3); margin 0.1.
    s = torch.tensor([0.5, 0.2, 0.4, 0.0, 0.3])
    loss, hits, pairs = pairwise(s, torch.tensor([3, 2]), 0.1)
    # pairs: (0.5-0.2)=.3 -> 0; (0.5-0.4)=.1 -> 0; (0.2-0.4)=-.2 -> .3; (0-0.3)=-.3 -> .4
    assert pairs == 4 and hits == 2
    assert float(loss) == pytest.approx((0 + 0 + 0.3 + 0.4) / 4)


def test_score_is_the_mean_token_logprob_of_the_response(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from kubetune_trainer.evaluation.preference import encode_pairs, response_logprobs

    lm = load_model(tiny_base())
    prompt = render_prompt("Tell me about the red car.", lm.tokenizer)
    seqs = encode_pairs(
        lm.tokenizer, prompt, ["The red car is fine, thanks for asking", "no idea sorry"]
    )
    lengths = [len(ids) - n for ids, n in seqs]
    assert lengths[0] >= lengths[1] + 3, lengths  # the batch pads the shorter one
    # By hand, each sequence alone: mean over its response tokens of log p(token | before).
    want = []
    for ids, n_prompt in seqs:
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        token_logps = [float(logp[t - 1, ids[t]]) for t in range(n_prompt, len(ids))]
        want.append(sum(token_logps) / len(token_logps))
    assert abs(want[0] - want[1]) > 1e-3  # the two scores differ: the check below can fail
    pad = lm.tokenizer.pad_token_id
    with torch.no_grad():
        got = response_logprobs(lm.model, seqs, pad)
        summed = response_logprobs(lm.model, seqs, pad, normalize=False)
    assert got.tolist() == pytest.approx(want, abs=1e-5)
    assert summed.tolist() == pytest.approx([w * n for w, n in zip(want, lengths, strict=True)],
                                            abs=1e-4)  # fmt: skip
    # The ranking recipe's loss sees the same scores (its collator, its compute_loss).
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = RankingTrainer(model=lm.model, args=args, margin=5.0)
    batch = RankingCollator(pad)([{"seqs": seqs}])
    with torch.no_grad():
        loss, out = trainer.compute_loss(lm.model, batch, return_outputs=True)
    assert out["scores"].tolist() == pytest.approx(want, abs=1e-5)
    assert float(loss) == pytest.approx(5.0 - (want[0] - want[1]), abs=1e-5)


def _accuracy(lm, records) -> float:  # type: ignore[no-untyped-def]
    rendered = [render_prompt(r["prompt"], lm.tokenizer) for r in records]
    return ordering_accuracy(lm.model, lm.tokenizer, records, rendered)["ordering_accuracy"]


def test_ranking_learns_heldout_order(tmp_path: Path) -> None:
    base = tiny_base()
    # Humans rank first what the base likes least: the base starts out ordering them wrong.
    order = [s for _, s in sorted(zip(base_scores(base, SUFFIXES), SUFFIXES, strict=True))]
    prepared = prepared_ranked(order, n=32)
    before = _accuracy(load_model(base), prepared.validation)
    assert before <= 0.4
    job = preference_job(str(tmp_path), "ranking", model={"base": base},
                   training={"maxSteps": 16, "ranking": {"margin": 0.1}})  # fmt: skip
    code, res = execute(job, prepared=prepared, say=lambda s: None)
    assert code == 0 and res is not None
    after = _accuracy(load_model(None, res.adapter.uri), prepared.validation)
    print(f"held-out ordering accuracy: base {before:.2f} -> tuned {after:.2f}")
    assert after >= 0.9, (before, after)
    assert res.report["objective"] == "ranking"
    assert res.tuned_eval_loss < res.base_eval_loss
    # The ordering accuracy is logged with every eval row, and is in the report, base and
    # tuned; a margin-ranking loss has no perplexity.
    rows = [json.loads(x) for x in
            (Path(res.run_uri) / "report" / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and all(0 <= r["eval_ordering_accuracy"] <= 1 for r in evals)
    assert not [r for r in rows if "eval_perplexity" in r]
    results = res.report["results"]
    assert results["eval_ordering_accuracy"] == evals[-1]["eval_ordering_accuracy"]
    assert results["base_ordering_accuracy"] == pytest.approx(before)
    assert results["tuned_ordering_accuracy"] == pytest.approx(after)
    assert not {"base_perplexity", "tuned_perplexity"} & results.keys()
    assert res.report["hyperparameters"]["ranking_margin"] == 0.1
    # The engine records the run in the adapter registry under the output root.
    entry = json.loads((tmp_path / "registry" / "p" / "v1.json").read_text())
    assert entry["objective"] == "ranking" and entry["adapter_sha256"] == res.adapter.sha256


def test_ranking_counts_the_lists_max_seq_length_cuts(tmp_path: Path) -> None:
    # Prompt ~23 tokens, responses ~10: a sequence fits in 48; a long response (~60) is cut.
    prepared = prepared_ranked(SUFFIXES, n=8)
    more = " and the red car is fine" * 6
    train, val = prepared.train, prepared.validation
    for r in train[:3] + val[:2]:
        r["responses"][1] += more
    train[0]["responses"][2] += more  # two responses cut: the list still counts once
    job = preference_job(str(tmp_path), "ranking", model={"base": tiny_base()},
                   dataset={"maxSeqLength": 48}, training={"maxSteps": 1})  # fmt: skip
    said: list[str] = []
    code, res = execute(job, prepared=prepared, say=said.append)
    assert code == 0 and res is not None
    assert (
        f"truncated: 3 of 8 training ranked lists longer than maxSeqLength 48 (2 of 12 "
        f"validation); {RANKING_TRUNCATION}"
    ) in said
    cut = res.report["data"]["truncated"]
    assert (cut["train"], cut["train_total"], cut["validation"], cut["dropped"]) == (3, 8, 2, 0)
    assert prepared.stats.truncated == 5
