"""Ranking: learn to order a ranked list of responses the way people did.

- Records: RankedRecord {prompt, responses (best first)}.
- Score of a response: its length-normalized log-likelihood given the prompt (mean
  log p per response token), so long answers are not penalised for their length alone.
  Computed by evaluation.preference (pad_batch, sequence_logprobs), the same code that
  scores `ordering_accuracy` in `kubetune eval`.
- Loss: for every pair (i ranked above j) in a list, the margin ranking loss
  max(0, margin - (s_i - s_j)), averaged over the pairs of the batch
  (spec.training.ranking.margin). All responses of a list share one forward batch.
- Evaluation: the same loss on validation lists, plus `ordering_accuracy` (the share of
  pairs scored in the human order).
Checkpointing, resume, SIGTERM and reporting come from the engine's callbacks, as for SFT;
this is a transformers Trainer whose compute_loss and prediction_step are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import Trainer, TrainingArguments

from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.errors import BadDataError
from kubetune_trainer.evaluation.preference import encode_pairs, pad_batch, sequence_logprobs

from .base import BuiltTrainer, RecipeContext, Truncation

# What encode_pairs keeps of a prompt + response longer than maxSeqLength (as SFT does).
RANKING_TRUNCATION = (
    "the prompt loses tokens from its start, keeping at least half of maxSeqLength (its end, "
    "nearest the answer); only when that is not enough is the response cut at its end"
)


def encode_lists(
    records: list[dict[str, Any]], tokenizer: Any, dataset: Any
) -> list[dict[str, Any]]:
    """Per record: {"seqs": [(ids, n_prompt) per response, best first], "truncated": bool}
    (truncated: at least one of its responses was cut to maxSeqLength)."""
    out = []
    max_len = dataset.max_seq_length
    for r in records:
        if len(r["responses"]) < 2:
            continue  # one response has nothing to be ranked against
        prompt = render_prompt(r["prompt"], tokenizer, dataset.template, dataset.system_prompt)
        responses = list(r["responses"])
        seqs = encode_pairs(tokenizer, prompt, responses)
        cut = any(len(ids) > max_len for ids, _ in seqs)
        if cut:
            seqs = encode_pairs(tokenizer, prompt, responses, max_len)
        out.append({"seqs": seqs, "truncated": cut})
    return out


@dataclass
class RankingCollator:
    """Flattens the lists of a batch into one padded batch of sequences (right padding)."""

    pad_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        seqs = [s for f in features for s in f["seqs"]]
        sizes = torch.tensor([len(f["seqs"]) for f in features], dtype=torch.long)
        return {**pad_batch(seqs, self.pad_id), "list_sizes": sizes}


def scores(model: Any, inputs: dict[str, Any]) -> Any:
    """Length-normalized log-likelihood of every response in the batch (1-D, differentiable):
    the evaluation's `sequence_logprobs`, so training and `ordering_accuracy` agree."""
    return sequence_logprobs(
        model, inputs["input_ids"], inputs["attention_mask"], inputs["target_mask"]
    )


def pairwise(s: Any, sizes: Any, margin: float) -> tuple[Any, int, int]:
    """(mean margin-ranking loss over ordered pairs, pairs in order, pairs)."""
    import torch

    losses, hits, start = [], 0, 0
    for n in sizes.tolist():
        g = s[start : start + n]
        start += n
        i, j = torch.triu_indices(n, n, offset=1, device=s.device)
        diff = g[i] - g[j]  # i is ranked above j: want diff >= margin
        losses.append(torch.clamp(margin - diff, min=0))
        hits += int((diff > 0).sum())
    flat = torch.cat(losses)
    return flat.mean(), hits, flat.numel()


class RankingTrainer(Trainer):
    def __init__(self, *args: Any, margin: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.margin = margin
        self._eval_hits = self._eval_pairs = 0

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:  # fmt: skip
        s = scores(model, inputs)
        loss, _, _ = pairwise(s, inputs["list_sizes"], self.margin)
        return (loss, {"scores": s}) if return_outputs else loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: Any = None) -> tuple[Any, None, None]:  # fmt: skip
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            s = scores(model, inputs)
            loss, hits, pairs = pairwise(s, inputs["list_sizes"], self.margin)
        self._eval_hits += hits
        self._eval_pairs += pairs
        return loss.detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's loop, plus `<prefix>_ordering_accuracy` in its metrics: evaluate()
        then logs it in the same row as the eval loss (and returns it)."""
        self._eval_hits = self._eval_pairs = 0
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        if self._eval_pairs:
            output.metrics[f"{prefix}_ordering_accuracy"] = self._eval_hits / self._eval_pairs
        return output


def build_trainer(ctx: RecipeContext) -> BuiltTrainer:
    spec, prep, tok = ctx.spec, ctx.prepared, ctx.tokenizer
    if prep.kind != "ranked":
        raise BadDataError(
            f"the ranking recipe trains ranked records (prompt, responses best first), not "
            f"{prep.kind!r}; use dataset.format ranked"
        )
    train = encode_lists(prep.train, tok, spec.dataset)
    evals = encode_lists(prep.validation, tok, spec.dataset)
    if not train:
        raise BadDataError("no ranked list with at least two responses to train on")
    kwargs: dict[str, Any] = dict(ctx.args_kwargs)
    # The batch carries target_mask/list_sizes, not model inputs: keep every column.
    kwargs["remove_unused_columns"] = False
    kwargs["label_names"] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = RankingTrainer(
        model=ctx.model,
        args=TrainingArguments(**kwargs),
        train_dataset=train,
        eval_dataset=evals or None,
        data_collator=RankingCollator(pad),
        processing_class=tok,
        callbacks=list(ctx.callbacks),
        margin=spec.training.ranking.margin,
    )
    tokens = sum(len(ids) for r in train for ids, _ in r["seqs"])
    cut = Truncation(
        spec.dataset.max_seq_length, RANKING_TRUNCATION,
        sum(r["truncated"] for r in train), len(train),
        sum(r["truncated"] for r in evals), len(evals), unit="ranked lists",
    )  # fmt: skip
    return BuiltTrainer(trainer, len(train), len(evals), tokens, cut)
