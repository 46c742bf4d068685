"""Supervised fine-tuning: prompt/completion, plain text or classification records.

Causal LMs learn the completion (loss on the answer only unless completionOnlyLoss is
off); BERT-style encoders learn the label. Tokenization, padding and packing come from
kubetune_trainer.data: with packing none, batches are padded dynamically and grouped by
length; with position_ids packing, examples share rows without attending to each other.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer, TrainingArguments

from kubetune_trainer.errors import BadDataError

from .base import BuiltTrainer, RecipeContext


def build_trainer(ctx: RecipeContext) -> BuiltTrainer:
    from kubetune_trainer.data.collate import (
        PackedCollator,
        PaddingCollator,
        pack_position_ids,
        pack_wrapped,
        resolve_packing,
    )
    from kubetune_trainer.data.tokenize import tokenize

    spec, prep, tok = ctx.spec, ctx.prepared, ctx.tokenizer
    if prep.kind not in ("sft", "text", "classification"):
        raise BadDataError(
            f"the sft recipe trains sft, text or classification records, not {prep.kind!r}; "
            "check dataset.format against spec.objective"
        )
    train = tokenize(prep.kind, prep.train, tok, spec.dataset)
    evals = tokenize(prep.kind, prep.validation, tok, spec.dataset)
    train_tokens = sum(train.lengths)
    kwargs: dict[str, Any] = dict(ctx.args_kwargs)
    packing = resolve_packing(spec.dataset.packing, spec.model.task, prep.kind)
    max_len = spec.dataset.max_seq_length
    train_ds: Any = train
    if packing == "none":
        collator: Any = PaddingCollator(tok.pad_token_id, max_length=max_len)
        kwargs.setdefault("train_sampling_strategy", "group_by_length")
    else:
        pack = pack_position_ids if packing == "position_ids" else pack_wrapped
        train_ds = pack(train, max_len)
        collator = PackedCollator(tok.pad_token_id, max_len, packing == "wrapped")
        # Packed rows carry position ids; a KV cache would let examples see each other.
        ctx.model.config.use_cache = False
    # Evaluation is always per example, padded: eval loss is comparable across packings.
    eval_collator = PaddingCollator(tok.pad_token_id, max_length=max_len)
    trainer = _Trainer(
        eval_collator=eval_collator,
        model=ctx.model,
        args=TrainingArguments(**kwargs),
        train_dataset=train_ds,
        eval_dataset=evals if len(evals) else None,
        data_collator=collator,
        processing_class=tok,
        callbacks=list(ctx.callbacks),
    )
    return BuiltTrainer(trainer, len(train), len(evals), train_tokens)


class _Trainer(Trainer):
    """A Trainer whose evaluation batches use their own (padding) collator."""

    def __init__(self, *args: Any, eval_collator: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._eval_collator = eval_collator

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        train_collator = self.data_collator
        self.data_collator = self._eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator
