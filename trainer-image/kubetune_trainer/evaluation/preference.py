"""Log-likelihoods of responses, and the preference/ranking accuracies built on them.

Used by the DPO/ranking evaluation and by the ranking recipe's loss (its collator pads
with `pad_batch`, its loss scores with `sequence_logprobs`): a response's score is the sum
(or per-token mean, "length-normalized") of log p(response token | prompt, earlier
response tokens) under the model. One implementation, so the ordering accuracy reported
by `kubetune eval` measures exactly what the ranking objective trains.
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def encode_pairs(
    tokenizer: Any, prompt: str, responses: list[str], max_len: int | None = None
) -> list[tuple[list[int], int]]:
    """(prompt + response + EOS token ids, number of prompt tokens) per response.

    Over `max_len`, the prompt loses tokens from its start (down to half the budget),
    then the response is cut at its end, as SFT tokenization does.
    """
    special = not bool(getattr(tokenizer, "chat_template", None))
    p = list(tokenizer(prompt, add_special_tokens=special)["input_ids"])
    out = []
    for r in responses:
        c = list(tokenizer(r, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            c.append(tokenizer.eos_token_id)
        pp = p
        if max_len is not None and len(p) + len(c) > max_len:
            keep = max(min(len(p), max_len // 2), max_len - len(c))
            pp = p[len(p) - keep :]
            c = c[: max_len - len(pp)]
        out.append((pp + c, len(pp)))
    return out


def pad_batch(
    batch: list[tuple[list[int], int]], pad_id: int, device: Any = None
) -> dict[str, Any]:
    """Right-padded tensors of (ids, n_prompt) pairs: input_ids, attention_mask and
    target_mask (True on the response tokens). Right padding keeps positions 0..n-1, as in
    training. The ranking recipe's collator builds its batches with this too."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(batch), width), dtype=torch.long, device=device)
    target = torch.zeros((len(batch), width), dtype=torch.bool, device=device)
    for i, (ids, n_prompt) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids, device=device)
        mask[i, : len(ids)] = 1
        target[i, n_prompt : len(ids)] = True
    return {"input_ids": input_ids, "attention_mask": mask, "target_mask": target}


def sequence_logprobs(
    model: Any, input_ids: Any, attention_mask: Any, target_mask: Any, normalize: bool = True
) -> Any:
    """Per row: the (mean per target token if normalize, else summed) log p of the tokens
    where target_mask is True, each given the tokens before it. 1-D, differentiable: the
    ranking recipe's loss back-propagates through it."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t + 1
    tok_logp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    tmask = target_mask[:, 1:].float()
    total = (tok_logp * tmask).sum(-1)
    return total / tmask.sum(-1).clamp(min=1) if normalize else total


def response_logprobs(
    model: Any, batch: list[tuple[list[int], int]], pad_id: int, normalize: bool = True
) -> Any:
    """A 1-D tensor: the (mean per token if normalize, else summed) response log-prob of
    every (ids, n_prompt) pair, in one padded forward pass."""
    device = next(model.parameters()).device
    return sequence_logprobs(model, **pad_batch(batch, pad_id, device), normalize=normalize)


def _scores(
    lm_model: Any, tokenizer: Any, prompt: str, responses: list[str], normalize: bool
) -> list[float]:
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.no_grad():
        s = response_logprobs(lm_model, encode_pairs(tokenizer, prompt, responses), pad, normalize)
    return [float(x) for x in s]


def preference_accuracy(
    model: Any, tokenizer: Any, records: list[Record], prompts: list[str] | None = None
) -> dict[str, float]:
    """Share of pairs where log p(chosen) > log p(rejected) (summed, as DPO's implicit reward),
    and the mean margin between them."""
    hits, margins = 0, []
    for i, r in enumerate(records):
        prompt = prompts[i] if prompts else r["prompt"]
        chosen, rejected = _scores(model, tokenizer, prompt, [r["chosen"], r["rejected"]], False)
        hits += chosen > rejected
        margins.append(chosen - rejected)
    n = len(records)
    return {
        "preference_accuracy": hits / n if n else 0.0,
        "logp_margin": sum(margins) / n if n else 0.0,
    }


def ordering_accuracy(
    model: Any, tokenizer: Any, records: list[Record], prompts: list[str] | None = None
) -> dict[str, float]:
    """Share of response pairs (i better than j) the model scores in the human order, using
    the length-normalized log-likelihood the ranking objective trains."""
    hits = pairs = 0
    for i, r in enumerate(records):
        prompt = prompts[i] if prompts else r["prompt"]
        s = _scores(model, tokenizer, prompt, list(r["responses"]), True)
        for a in range(len(s)):
            for b in range(a + 1, len(s)):
                pairs += 1
                hits += s[a] > s[b]
    return {"ordering_accuracy": hits / pairs if pairs else 0.0, "ordered_pairs": float(pairs)}
