"""Supervised fine-tuning: prompt/completion, plain text or classification records.

Causal LMs learn the completion (loss on the answer only unless completionOnlyLoss is
off); BERT-style encoders learn the label (sequence_classification) or the masked tokens
of text records (masked_lm: transformers' DataCollatorForLanguageModeling, masks drawn
from the training seed). Tokenization, padding and packing come from
kubetune_trainer.data: with packing none, batches are padded dynamically and grouped by
length; with position_ids packing, examples share rows without attending to each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from kubetune_trainer.errors import BadDataError, ConfigError

from .base import BuiltTrainer, RecipeContext, Truncation

# What kubetune_trainer.data.tokenize keeps of an example longer than maxSeqLength.
SFT_TRUNCATION = (
    "the prompt loses tokens from its start, keeping at least half of maxSeqLength (its end, "
    "nearest the answer); only when that is not enough is the completion cut at its end"
)
TEXT_TRUNCATION = "the text is cut at its end"


def truncation_policy(kind: str, tokenizer: Any) -> str:
    if kind == "sft":
        return SFT_TRUNCATION
    if kind == "classification":  # the tokenizer's own truncation, special tokens kept
        side = "start" if getattr(tokenizer, "truncation_side", "right") == "left" else "end"
        return f"the text is cut at its {side} (special tokens kept)"
    return TEXT_TRUNCATION


def build_trainer(ctx: RecipeContext) -> BuiltTrainer:
    from kubetune_trainer.data.collate import PackedCollator, PaddingCollator, resolve_packing
    from kubetune_trainer.data.token_cache import tokenized_splits
    from kubetune_trainer.modeling import packed_attention

    spec, prep, tok = ctx.spec, ctx.prepared, ctx.tokenizer
    if prep.kind not in ("sft", "text", "classification"):
        raise BadDataError(
            f"the sft recipe trains sft, text or classification records, not {prep.kind!r}; "
            "check dataset.format against spec.objective"
        )
    # The architecture decides whether packed examples stay apart (data.collate.plan_packing).
    packing = resolve_packing(spec.dataset.packing, spec.model.task, prep.kind, ctx.model)
    if spec.model.task == "masked_lm" and (prep.kind != "text" or packing != "none"):
        raise ConfigError(
            "spec.model.task masked_lm trains text records (dataset.format papers) with "
            f"dataset.packing none or auto, not {prep.kind} records with packing {packing}"
        )
    # Arrow, memory-mapped, built once per run (data/token_cache.py); packed rows are read
    # through the stored plan.
    tokens = tokenized_splits(prep, tok, spec.dataset, packing, ctx.data_store)
    train, evals = tokens.train, tokens.validation
    train_tokens = train.total_tokens
    cut = Truncation(
        spec.dataset.max_seq_length, truncation_policy(prep.kind, tok),
        train.truncated, len(train), evals.truncated, len(evals),
    )  # fmt: skip
    kwargs: dict[str, Any] = dict(ctx.args_kwargs)
    max_len = spec.dataset.max_seq_length
    if spec.model.task == "masked_lm":
        mlm = MaskedLMCollator(tok, spec.training.seed)
        kwargs.setdefault("train_sampling_strategy", "group_by_length")
        return _build(ctx, kwargs, train, len(train), evals, mlm, mlm, train_tokens, cut)
    if packing == "none":
        collator: Any = PaddingCollator(tok.pad_token_id, max_length=max_len)
        kwargs.setdefault("train_sampling_strategy", "group_by_length")
    else:
        collator = PackedCollator(tok.pad_token_id, max_len, packing == "wrapped")
        # Packed rows carry position ids; a KV cache would let examples see each other.
        ctx.model.config.use_cache = False
        # On the CPU, long rows attend within each example instead of over masked rows.
        packed_attention.use(ctx.model, spec.model.attn_implementation, packing, max_len)
    # Evaluation is always per example, padded: eval loss is comparable across packings.
    eval_collator = PaddingCollator(tok.pad_token_id, max_length=max_len)
    return _build(
        ctx, kwargs, tokens.train_rows, len(train), evals, collator, eval_collator,
        train_tokens, cut,
    )  # fmt: skip


def _build(
    ctx: RecipeContext,
    kwargs: dict[str, Any],
    train_ds: Any,
    train_examples: int,
    evals: Any,
    collator: Any,
    eval_collator: Any,
    train_tokens: int,
    truncation: Truncation,
) -> BuiltTrainer:
    trainer = _Trainer(
        eval_collator=eval_collator,
        model=ctx.model,
        args=TrainingArguments(**kwargs),
        train_dataset=train_ds,
        eval_dataset=evals if len(evals) else None,
        data_collator=collator,
        processing_class=ctx.tokenizer,
        callbacks=list(ctx.callbacks),
    )
    return BuiltTrainer(trainer, train_examples, len(evals), train_tokens, truncation)


class MaskedLMCollator:
    """transformers' DataCollatorForLanguageModeling (mlm=True, 15% of the tokens, special
    tokens never masked), with masks seeded by the training seed and the batch itself.

    Each batch draws its masks from a generator seeded with (seed, the batch's token ids):
    the same run masks the same way, a resumed run masks its remaining batches as the
    uninterrupted run did (no generator state to carry in the checkpoint), the base and the
    tuned model are evaluated on identical masks, and an epoch's new batches get new masks.
    """

    def __init__(self, tokenizer: Any, seed: int, probability: float = 0.15) -> None:
        from transformers import DataCollatorForLanguageModeling

        if tokenizer.mask_token is None:
            raise ConfigError(
                "spec.model.task masked_lm: this tokenizer has no mask token; use a "
                "BERT-style encoder (or model.task causal_lm)"
            )
        self.seed = seed
        self.inner = DataCollatorForLanguageModeling(
            tokenizer, mlm=True, mlm_probability=probability, pad_to_multiple_of=8, seed=seed
        )

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        h = hashlib.sha256(str(self.seed).encode())
        for ex in batch:
            h.update(b"|" + ",".join(map(str, ex["input_ids"])).encode())
        self.inner.generator = torch.Generator().manual_seed(int(h.hexdigest()[:15], 16))
        # The text tokenizer's labels (the ids) are replaced by the collator's masked labels.
        return self.inner([{"input_ids": ex["input_ids"]} for ex in batch])


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from (seed, epoch) instead of the global RNG.

    The stock sampler draws from the global torch RNG when an epoch starts, whose state then
    depends on everything the process did before (a base evaluation, a resume skipping it):
    a resumed run would see other batches than the uninterrupted one. The Trainer calls
    set_epoch every epoch, also the resumed one, so the order is the same in both.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class _Trainer(Trainer):
    """A Trainer whose evaluation batches use their own (padding) collator, whose
    length-grouped training order is seeded (resumable), and whose causal-LM training loss
    can skip the full logits tensor (by default; KUBETUNE_LOSS: recipes/lm_loss.py)."""

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        from .lm_loss import causal_lm_loss

        if return_outputs or not model.training or self.label_smoother or self.compute_loss_func:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # Normalised as the model would be: by num_items_in_batch only when it receives it.
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = causal_lm_loss(model, inputs, items)
        if loss is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and items is not None:
            # The same rescaling as Trainer.compute_loss (the mean over devices follows).
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss

    def __init__(self, *args: Any, eval_collator: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._eval_collator = eval_collator

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        data = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(data, "lengths"):
            # The stored length column: the stock sampler would read every example for it.
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return SeededLengthGroupedSampler(batch, data.lengths, seed)
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        train_collator = self.data_collator
        self.data_collator = self._eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator
