"""`kubetune eval` on a tiny Llama: loss/perplexity agree with the model's own loss,
generation is reproducible and its settings are recorded, the CLI writes the result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubetune_api.loader import parse_job
from kubetune_trainer.data.prepare import prepare
from kubetune_trainer.data.tokenize import tokenize
from kubetune_trainer.evaluation.generation import format_prompts, generate, validation_loss
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.evaluation.runner import evaluate, evaluate_job
from tests.support.trainer.tiny_lm import TICKERS, finance_doc, finance_job


def test_validation_loss_matches_model_loss(tiny_dirs: dict[str, Path]) -> None:
    import torch

    job = finance_job(tiny_dirs["data"], str(tiny_dirs["base"]))
    lm = load_model(str(tiny_dirs["base"]), str(tiny_dirs["adapter"]))
    data = prepare(job, lm.tokenizer)
    one = data.validation[:1]
    got = validation_loss(lm, data.kind, one, job.spec.dataset)
    ids = tokenize(data.kind, one, lm.tokenizer, job.spec.dataset)[0]
    with torch.no_grad():
        ref = lm.model(
            input_ids=torch.tensor([ids["input_ids"]]), labels=torch.tensor([ids["labels"]])
        ).loss
    assert got["loss"] == pytest.approx(float(ref), rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(float(ref)), rel=1e-5)
    # Batched with padding over several examples = token-weighted mean of the singles.
    many = data.validation[:3]
    parts = [validation_loss(lm, data.kind, [r], job.spec.dataset) for r in many]
    weighted = sum(p["loss"] * p["loss_tokens"] for p in parts) / sum(
        p["loss_tokens"] for p in parts
    )
    assert validation_loss(lm, data.kind, many, job.spec.dataset)["loss"] == pytest.approx(
        weighted, rel=1e-4
    )


def test_generation_reproducible_and_recorded(tiny_dirs: dict[str, Path]) -> None:
    job = finance_job(tiny_dirs["data"], str(tiny_dirs["base"]))
    base = load_model(str(tiny_dirs["base"]))
    tuned = load_model(None, str(tiny_dirs["adapter"]))  # base found in adapter_config.json
    data = prepare(job, base.tokenizer)
    prompts = format_prompts(data.validation[:2], base.tokenizer, job.spec.dataset)
    assert prompts[0].startswith("<|im_start|>user\n")  # the chat template of the tiny model
    gen = job.spec.evaluation.generation.model_copy(update={"temperature": 1.0, "seed": 7})
    first, again = generate(tuned, prompts, gen), generate(tuned, prompts, gen)
    assert first == again
    # Batched (left-padded) greedy decoding equals one-by-one decoding.
    greedy = job.spec.evaluation.generation
    assert generate(tuned, prompts, greedy, batch_size=2) == [
        generate(tuned, [p], greedy)[0] for p in prompts
    ]

    r_base = evaluate(base, job, data.kind, data.format, data.validation)
    r_tuned = evaluate(tuned, job, data.kind, data.format, data.validation)
    assert r_tuned["generation"] == {
        "max_new_tokens": 12, "temperature": 0.0, "top_p": 1.0, "seed": 0, "decoding": "greedy",
    }  # fmt: skip
    assert r_tuned["examples_generated"] == 3
    assert r_tuned["examples_scored"] == len(data.validation)
    for key in ("loss", "perplexity", "rouge_l", "bleu", "format_compliance", "citation_rate",
                "placeholder_compliance", "unsupported_number_rate"):  # fmt: skip
        assert key in r_tuned["metrics"]
    assert r_base["metrics"]["loss"] != pytest.approx(r_tuned["metrics"]["loss"])
    assert r_tuned["adapter"] == str(tiny_dirs["adapter"])


def test_eval_cli_writes_json(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.cli import main

    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(json.dumps(finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))))
    out = tmp_path / "eval.json"
    args = ["eval", str(spec_file), "--adapter", str(tiny_dirs["adapter"]), "--result", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["format"] == "finance_qa" and result["kind"] == "sft"
    assert "perplexity" in res.output and "rouge_l" in res.output
    # -o json: the same result document on stdout, and only it
    res = CliRunner().invoke(main, [*args, "-o", "json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["metrics"] == result["metrics"] and set(printed) == set(result)


def test_preference_and_ranked_results(tiny_dirs: dict[str, Path]) -> None:
    from kubetune_trainer.data.templates import render_prompt
    from kubetune_trainer.evaluation.preference import (
        encode_pairs,
        ordering_accuracy,
        preference_accuracy,
        response_logprobs,
    )

    lm = load_model(None, str(tiny_dirs["adapter"]))
    pairs = [{"prompt": f"How did {t} do?", "chosen": f"{t} grew.", "rejected": f"{t} fell a lot."}
             for t in ("AAPL", "MSFT", "NVDA")]  # fmt: skip
    ranked = [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"], "No idea."]}
              for p in pairs]  # fmt: skip
    for objective, fmt, kind, records, key in (
        ("dpo", "preference", "preference", pairs, "preference_accuracy"),
        ("ranking", "ranked", "ranked", ranked, "ordering_accuracy"),
    ):
        doc = finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]), objective=objective)
        doc["spec"]["dataset"]["format"] = fmt
        job = parse_job(doc)
        res = evaluate(lm, job, kind, fmt, records)
        rendered = [render_prompt(r["prompt"], lm.tokenizer) for r in records]
        fn = preference_accuracy if kind == "preference" else ordering_accuracy
        assert res["metrics"][key] == fn(lm.model, lm.tokenizer, records, rendered)[key]
        assert res["examples"] == [] and 0 <= res["metrics"][key] <= 1
    # The accuracy is the share of pairs whose summed log-likelihoods are in order.
    import torch

    hits = 0
    for r, prompt in zip(pairs, rendered, strict=True):
        with torch.no_grad():
            s = response_logprobs(
                lm.model, encode_pairs(lm.tokenizer, prompt, [r["chosen"], r["rejected"]]),
                lm.tokenizer.pad_token_id, normalize=False,
            )  # fmt: skip
        hits += bool(s[0] > s[1])
    got = evaluate(lm, job, "preference", "preference", pairs)
    assert got["metrics"]["preference_accuracy"] == hits / len(pairs)


def test_papers_are_scored_by_heldout_perplexity(tiny_dirs: dict[str, Path]) -> None:
    import torch

    doc = finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))
    doc["spec"]["dataset"]["format"] = "papers"
    job = parse_job(doc)
    lm = load_model(str(tiny_dirs["base"]))
    records = [{"text": "AAPL revenue grew five percent."}, {"text": "MSFT trades at <PRICE>."}]
    res = evaluate(lm, job, "text", "papers", records)
    assert set(res["metrics"]) == {"loss", "perplexity", "loss_tokens"}  # no generation
    ids = [lm.tokenizer(r["text"])["input_ids"] + [lm.tokenizer.eos_token_id] for r in records]
    with torch.no_grad():
        nll = [
            float(lm.model(input_ids=torch.tensor([x]), labels=torch.tensor([x])).loss) for x in ids
        ]
    n = [len(x) - 1 for x in ids]  # predicted tokens per text
    mean = sum(a * b for a, b in zip(nll, n, strict=True)) / sum(n)
    assert res["metrics"]["loss"] == pytest.approx(mean, rel=1e-5)
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(mean), rel=1e-5)


def test_qa_job_scores_exact_match_and_rouge_l(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A qa-format job end to end (rows -> qa prompts -> generation -> metrics), with
    references built from the model's own greedy answers so the scores are known."""
    import re

    asked = [(f"How did {t} do?", f"{t} revenue up {5 + i} percent") for i, t in
             enumerate(TICKERS[:4])]  # fmt: skip
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps({"question": q, "answer": "fine", "context": c}) + "\n"
                             for q, c in asked))  # fmt: skip

    def qa_job(answers: list[str]):  # type: ignore[no-untyped-def]
        val.write_text("".join(json.dumps({"question": q, "answer": a, "context": c}) + "\n"
                               for (q, c), a in zip(asked, answers, strict=True)))  # fmt: skip
        doc = finance_doc(train, str(tiny_dirs["base"]))
        doc["spec"]["dataset"].update(format="qa", validation={"source": str(val)})
        doc["spec"]["evaluation"]["maxSamples"] = 4
        # Seeded sampling: the tiny model's greedy answer to these prompts is empty.
        doc["spec"]["evaluation"]["generation"]["temperature"] = 1.0
        return parse_job(doc)

    lm = load_model(None, str(tiny_dirs["adapter"]))
    job = qa_job(["unknown"] * 4)
    data = prepare(job, lm.tokenizer)
    assert [r["prompt"] for r in data.validation] == [f"{c}\n\nQuestion: {q}" for q, c in asked]
    outs = generate(lm, format_prompts(data.validation, lm.tokenizer, job.spec.dataset),
                    job.spec.evaluation.generation)  # fmt: skip
    words = [re.findall(r"[a-z0-9]+", o.lower()) for o in outs]  # rouge_score's tokens
    assert all(words) and outs[2].upper().lower() == outs[2].lower(), outs
    # 1: the answer itself; 2: nothing in common; 3: the answer in capitals with a "!" (the
    # same after SQuAD normalisation); 4: the answer plus three more words.
    refs = [outs[0], "zzqx vvqj", outs[2].upper() + "!", outs[3] + " extra words here"]
    assert not {"zzqx", "vvqj"} & set(words[1]) and not {"extra", "words", "here"} & set(words[3])
    result = evaluate_job(qa_job(refs), adapter=str(tiny_dirs["adapter"]))
    assert result["format"] == "qa" and result["examples_generated"] == 4
    assert [e["output"] for e in result["examples"]] == outs
    n = len(words[3])  # LCS n: precision 1, recall n / (n + 3)
    assert result["metrics"]["exact_match"] == pytest.approx(2 / 4)
    assert result["metrics"]["rouge_l"] == pytest.approx((1 + 0 + 1 + 2 * n / (2 * n + 3)) / 4)
