"""One evaluation: a model on a job's validation records -> an EvalResult (JSON-ready dict).

What is measured depends on the record kind:
- sft: loss + perplexity on all validation records; on the first `maxSamples`, generation,
  ROUGE-L, BLEU, the format's domain metrics and evaluation.metrics' (medical_mcq,
  genomics); per-example outputs are kept.
- text (papers): held-out loss + perplexity; with evaluation.metrics genomics, the gene
  cloze accuracy on up to `maxSamples` records.
- preference / ranked: preference accuracy / pairwise ordering accuracy.
Generation settings are recorded with every result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import ConfigError

from .domain import domain_metrics
from .generation import format_prompts, generate, generation_params, validation_loss
from .models import LoadedModel, load_model
from .preference import ordering_accuracy, preference_accuracy
from .text_metrics import bleu, rouge_l

Record = dict[str, Any]
EvalResult = dict[str, Any]


def evaluate(
    lm: LoadedModel, job: FineTuneJob, kind: str, fmt: str, records: list[Record]
) -> EvalResult:
    spec = job.spec
    ev, ds = spec.evaluation, spec.dataset
    if not records:
        raise ConfigError("no validation records to evaluate; set dataset.validation")
    started = time.monotonic()
    metrics: dict[str, float] = {}
    examples: list[dict[str, str]] = []
    sample = records[: ev.max_samples]
    if kind in ("sft", "text"):
        metrics.update(validation_loss(lm, kind, records, ds))
    if kind == "sft":
        prompts = format_prompts(sample, lm.tokenizer, ds)
        outputs = generate(lm, prompts, ev.generation)
        refs = [r.get("completion", "") for r in sample]
        metrics["rouge_l"] = rouge_l(outputs, refs)
        metrics["bleu"] = bleu(outputs, refs)
        metrics.update(domain_metrics(fmt, outputs, sample, ev.metrics))
        examples = [
            {"prompt": r["prompt"], "reference": ref, "output": out}
            for r, ref, out in zip(sample, refs, outputs, strict=True)
        ]
    elif kind == "preference":
        prompts = format_prompts(sample, lm.tokenizer, ds)
        metrics.update(preference_accuracy(lm.model, lm.tokenizer, sample, prompts))
    elif kind == "ranked":
        prompts = format_prompts(sample, lm.tokenizer, ds)
        metrics.update(ordering_accuracy(lm.model, lm.tokenizer, sample, prompts))
    elif kind == "text" and "genomics" in ev.metrics:
        from .domain_bio import gene_cloze_metrics

        metrics.update(gene_cloze_metrics(lm, records, ev.max_samples))
    elif kind != "text":
        raise ConfigError(f"evaluation of {kind!r} records is not supported; use a causal LM job")
    return {
        "model": lm.label,
        "base": lm.base,
        "adapter": lm.adapter,
        "format": fmt,
        "kind": kind,
        "examples_scored": len(records),
        "examples_generated": len(examples),
        "generation": generation_params(ev.generation),
        "metrics": metrics,
        "examples": examples,
        "seconds": round(time.monotonic() - started, 2),
    }


def evaluate_job(
    job: FineTuneJob,
    adapter: str | None = None,
    base: str | None = None,
    prepared: Any = None,
) -> EvalResult:
    """Prepare the job's data (unless given) and evaluate base (+ adapter) on its validation set."""
    from kubetune_trainer.data.prepare import prepare

    lm = load_model(base or job.spec.model.base, adapter)
    data = prepared if prepared is not None else prepare(job, lm.tokenizer)
    return evaluate(lm, job, data.kind, data.format, data.validation)


def write_result(result: EvalResult, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2, default=str) + "\n")
