"""The post-training hook `kubetune run` calls: base vs tuned on the validation set,
with the model still in memory (the base is the same model with the adapter disabled,
so no second copy is loaded, also for a 4-bit base)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from kubetune_api.spec import FineTuneJob

from .compare import before_after_text, pair_results
from .models import LoadedModel
from .runner import evaluate


@contextmanager
def _inference_mode(model: Any, tokenizer: Any) -> Any:
    """eval(), KV cache on and left padding for generation; training state restored after."""
    was_training, side = model.training, tokenizer.padding_side
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    model.eval()
    tokenizer.padding_side = "left"
    if config is not None:
        config.use_cache = True
    try:
        yield
    finally:
        tokenizer.padding_side = side
        if config is not None and use_cache is not None:
            config.use_cache = use_cache
        if was_training:
            model.train()


def after_training(
    job: FineTuneJob,
    model: Any,
    tokenizer: Any,
    prepared: Any,
    say: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate tuned and base (adapter disabled); print the side-by-side summary.

    Returns {"base": EvalResult, "tuned": EvalResult, "summary": str} for the run report.
    """
    tuned_lm = LoadedModel(model, tokenizer, job.spec.model.base, "(trained adapter)")
    base_lm = LoadedModel(model, tokenizer, job.spec.model.base, None)
    kind, fmt, records = prepared.kind, prepared.format, prepared.validation
    with _inference_mode(model, tokenizer):
        tuned = evaluate(tuned_lm, job, kind, fmt, records)
        with model.disable_adapter():
            base = evaluate(base_lm, job, kind, fmt, records)
    cmp = pair_results(base, tuned, ("base", "tuned"))
    summary = before_after_text(cmp) if cmp["examples"] or base["metrics"] else ""
    if say and summary:
        say(summary)
    return {"base": base, "tuned": tuned, "summary": summary}
