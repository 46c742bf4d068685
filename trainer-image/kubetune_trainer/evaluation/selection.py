"""The metric that picks the best checkpoint (evaluation.selectBy) during training.

eval_loss comes from the Trainer's own evaluation. Any other metric is measured on
generations of the first evaluation.maxSamples validation examples, with the job's
generation settings, at every evaluation: rougeL, bleu, or a domain metric of the
dataset format (evaluation/domain.py) or of evaluation.metrics (domain_bio.py).
Direction: higher is better except LOWER_IS_BETTER.
"""

from __future__ import annotations

from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import ConfigError

from .domain import domain_metrics
from .generation import format_prompts, generate
from .models import LoadedModel
from .text_metrics import bleu, rouge_l

Record = dict[str, Any]
LOWER_IS_BETTER = frozenset(
    {"eval_loss", "brier_score", "unsupported_number_rate", "unsupported_variant_rate"}
)
TEXT_METRICS = {"rougeL": rouge_l, "bleu": bleu}


def metric_key(name: str) -> str:
    """The Trainer's metrics key (metric_for_best_model) of a selectBy name."""
    return name if name == "eval_loss" else f"eval_{name}"


def greater_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


def check_select_by(job: FineTuneJob, kind: str, fmt: str, records: list[Record]) -> None:
    """ConfigError naming evaluation.selectBy when the metric cannot be measured here."""
    ev = job.spec.evaluation
    name = ev.select_by
    if ev.metrics and kind not in ("sft", "text"):
        raise ConfigError(
            f"evaluation.metrics {ev.metrics} are measured on generated answers or text, "
            f"which needs an sft or papers dataset (this one has {kind!r} records); "
            "remove evaluation.metrics"
        )
    if kind == "text" and ev.metrics and job.spec.model.task != "causal_lm":
        raise ConfigError(
            f"evaluation.metrics {ev.metrics} on text records needs a causal LM (the gene "
            f"cloze generates the name); model.task is {job.spec.model.task!r}: remove them"
        )
    if name == "eval_loss":
        return
    if kind != "sft":
        raise ConfigError(
            f"evaluation.selectBy {name!r} is measured on generated answers, which needs an "
            f"sft dataset (this one has {kind!r} records); use selectBy: eval_loss"
        )
    if not records:
        raise ConfigError(
            f"evaluation.selectBy {name!r} needs validation data; set "
            "dataset.validation.fraction above 0 or dataset.validation.source"
        )
    known = sorted(TEXT_METRICS) + sorted(domain_metrics(fmt, [""], records[:1], ev.metrics))
    if name not in known:
        raise ConfigError(
            f"evaluation.selectBy {name!r} is not measured for dataset format {fmt!r}; "
            f"use eval_loss or one of {', '.join(known)}"
        )


def measure(
    name: str, model: Any, tokenizer: Any, job: FineTuneJob, fmt: str, records: list[Record]
) -> float:
    """`name` on the model as it is now (generation in inference mode, state restored)."""
    from .hook import _inference_mode

    ev = job.spec.evaluation
    sample = records[: ev.max_samples]
    lm = LoadedModel(model, tokenizer, job.spec.model.base, "(training)")
    with _inference_mode(model, tokenizer):
        outputs = generate(lm, format_prompts(sample, tokenizer, job.spec.dataset), ev.generation)
    refs = [r.get("completion", "") for r in sample]
    if name in TEXT_METRICS:
        return float(TEXT_METRICS[name](outputs, refs))
    value = domain_metrics(fmt, outputs, sample, ev.metrics)[name]
    return float("nan") if value is None else float(value)
