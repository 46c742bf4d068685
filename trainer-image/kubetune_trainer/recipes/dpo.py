"""Direct Preference Optimization with TRL's DPOTrainer, on the engine's LoRA model.

- Records: PreferenceRecord {prompt, chosen, rejected}. The prompt is rendered with the
  job's template (the same layout SFT, evaluation and serving use); chosen/rejected are
  the assistant's text, to which TRL appends EOS.
- Reference model: the same network with the adapter disabled. The engine hands over a
  freshly initialised adapter (B = 0), so "adapter disabled" is exactly the starting
  policy, and no second model copy (or adapter copy) is held. TRL >= 1.x adds a "ref"
  adapter copy when given a PeftModel; it is deleted here, and TRL then falls back to
  disabling adapters (see trl.trainer.utils.use_adapter(model, None)).
- Options: spec.training.dpo.beta and lossType (sigmoid, ipo, hinge, robust). `robust`
  needs a label-flip rate; 0.1 is the value the Robust DPO paper recommends (0 would make
  it identical to sigmoid).
- Works with 4-bit bases (TRL keeps the LoRA weights trainable in bf16 then).
Checkpointing, resume, SIGTERM and reporting come from the engine's callbacks, as for SFT.
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.errors import BadDataError

from .base import BuiltTrainer, RecipeContext, Truncation
from .hyperparameters import ROBUST_LABEL_SMOOTHING

# TRL's DPO truncation (truncation_mode keep_start, its only mode for text): each
# prompt + answer sequence is cut at its end, and pairs whose prompt alone reaches
# max_length are dropped when the dataset is tokenized. Unlike SFT and ranking, the prompt
# keeps its start.
DPO_TRUNCATION = (
    "the prompt is kept whole from its start and the answer is cut at its end (TRL's "
    "truncation_mode keep_start)"
)


def preference_rows(
    records: list[dict[str, Any]], tokenizer: Any, dataset: Any
) -> list[dict[str, str]]:
    """{prompt (rendered), chosen, rejected} rows for TRL."""
    return [
        {
            "prompt": render_prompt(
                r["prompt"], tokenizer, dataset.template, dataset.system_prompt
            ),
            "chosen": r["chosen"],
            "rejected": r["rejected"],
        }
        for r in records
    ]


def dpo_args(ctx: RecipeContext) -> dict[str, Any]:
    opts = ctx.spec.training.dpo
    kwargs: dict[str, Any] = dict(ctx.args_kwargs)
    kwargs.update(
        beta=opts.beta,
        loss_type=[opts.loss_type],
        max_length=ctx.spec.dataset.max_seq_length,
        # The engine already decided (and applied) gradient checkpointing on the model.
        gradient_checkpointing=bool(getattr(ctx.model, "is_gradient_checkpointing", False)),
        remove_unused_columns=False,
        dataset_num_proc=None,
    )
    if opts.loss_type == "robust":
        kwargs["label_smoothing"] = ROBUST_LABEL_SMOOTHING
    return kwargs


def build_trainer(ctx: RecipeContext) -> BuiltTrainer:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    spec, prep, tok = ctx.spec, ctx.prepared, ctx.tokenizer
    if prep.kind != "preference":
        raise BadDataError(
            f"the dpo recipe trains preference records (prompt, chosen, rejected), not "
            f"{prep.kind!r}; use dataset.format preference or rated"
        )
    train = Dataset.from_list(preference_rows(prep.train, tok, spec.dataset))
    evals = (
        Dataset.from_list(preference_rows(prep.validation, tok, spec.dataset))
        if prep.validation
        else None
    )
    trainer = DPOTrainer(
        model=ctx.model,
        ref_model=None,
        args=DPOConfig(**dpo_args(ctx)),
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tok,
        callbacks=list(ctx.callbacks),
    )
    if "ref" in trainer.model.peft_config:
        # Reference = adapter disabled (module docstring): drop TRL's copy of the adapter.
        trainer.model.delete_adapter("ref")
        trainer.model.set_adapter("default")
    ds, eval_ds = trainer.train_dataset, trainer.eval_dataset
    # Each pair runs the prompt twice (with chosen and with rejected).
    tokens = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True)
    )
    max_len = spec.dataset.max_seq_length
    cut = Truncation(
        max_len, DPO_TRUNCATION, _cut_pairs(ds, max_len), len(ds),
        _cut_pairs(eval_ds, max_len) if eval_ds is not None else 0, len(eval_ds or []),
        dropped=len(train) - len(ds) + (len(evals) - len(eval_ds) if evals is not None else 0),
        unit="pairs",
    )  # fmt: skip
    return BuiltTrainer(trainer, len(ds), len(eval_ds or []), tokens, cut)


def _cut_pairs(ds: Any, max_len: int) -> int:
    """Pairs TRL's collator cuts: prompt + the longer answer (EOS included) over max_len."""
    return sum(
        len(p) + max(len(c), len(r)) > max_len
        for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True)
    )
