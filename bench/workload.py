"""The trainer benchmarks' workload: a ~30M-parameter Llama and instruction-shaped data.

Everything is built offline and deterministically (no model hub):

- data: prompt/completion pairs of Zipf-distributed pseudo-words. The target length of an
  example in tokens is lognormal (median 120, sigma 0.8) clipped to [16, 512], so most
  examples are short and a few are long, like real instruction sets; the prompt gets 30-60%
  of it. The measured distribution (after the chat template) is reported with the figures.
- tokenizer: byte-level BPE, 8k vocabulary, trained with `tokenizers` on that text, with
  the ChatML template kubetune's built-in models use.
- model: LlamaConfig(hidden 512, 8 layers, 8 heads, MLP 1408, tied embeddings), random init.

Built once per size into bench/.cache/<name>/ (model folder + data.jsonl).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import BENCH

CACHE = BENCH / ".cache"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


@dataclass(frozen=True)
class Size:
    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    examples: int  # training examples (one epoch is measured)
    max_len: int = 512
    median_len: int = 120
    sigma: float = 0.8
    min_len: int = 16
    kv_heads: int = 0  # grouped-query attention; 0: one per query head
    tied: bool = True  # lm_head shares the embedding
    # The model's vocabulary when larger than the tokenizer's (whose BPE cannot learn 49k
    # tokens from this corpus): the head and the loss then cost what a real 49k one does.
    model_vocab: int = 0


# 1024 examples: a pool the size of a small real instruction set (packing's fill depends
# on it); the throughput benchmark times a fixed number of steps, not the whole epoch.
FULL = Size("llama30m-1k", 512, 8, 8, 1408, 8192, 1024)
QUICK = Size("llama-quick", 128, 2, 4, 256, 2048, 48, max_len=256, median_len=60)
# Full-epoch comparisons with other trainers (throughput --vs): 256 examples per epoch at
# maxSeqLength 512 and 2048, the same lognormal lengths (the 2048 cap keeps the long tail).
VS = {
    512: Size("llama30m-vs512", 512, 8, 8, 1408, 8192, 256),
    2048: Size("llama30m-vs2048", 512, 8, 8, 1408, 8192, 256, max_len=2048),
}
VS_QUICK = {256: QUICK}
# Between the two, for where attention inside each example starts to pay (findings.md).
VS_1024 = Size("llama30m-vs1024", 512, 8, 8, 1408, 8192, 256, max_len=1024)
# The loss levers at a realistic vocabulary: SmolLM2's 49,152 (logits are then the largest
# activation); 64 examples keep one epoch short.
VS_49K = Size("llama30m-vs512-v49k", 512, 8, 8, 1408, 8192, 64, model_vocab=49152)
# TinyLlama-1.1B's shape (hidden 2048, 22 layers, MLP 5632) with the 8k vocabulary: a
# model whose weights, not the runtime, dominate memory, as they do for the users' 7B.
LARGE = Size("llama1b", 2048, 22, 32, 5632, 8192, 64)
# TinyLlama-1.1B's whole shape: 32k untied vocabulary, 4 kv heads (GQA). The tokenizer
# still has 8k tokens; the rows above it are never looked up but weigh what they weigh.
LARGE_32K = Size(
    "llama1b-32k", 2048, 22, 32, 5632, 8192, 64, kv_heads=4, tied=False, model_vocab=32000
)


def _words(rnd: random.Random, n: int) -> list[str]:
    syll = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "he", "ji"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rnd.choice(syll) for _ in range(rnd.randint(1, 4))))
    return sorted(out)


def _target_lengths(size: Size, rnd: random.Random) -> list[int]:
    mu = math.log(size.median_len)
    return [
        max(size.min_len, min(size.max_len, round(rnd.lognormvariate(mu, size.sigma))))
        for _ in range(size.examples)
    ]


def build(size: Size) -> Path:
    """The folder holding model/ (weights + tokenizer) and data.jsonl for `size`."""
    out = CACHE / size.name
    if (out / "done.json").is_file():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rnd = random.Random(1234)
    vocab = _words(rnd, 6000)
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf: a few words are common

    def sentence(n_words: int) -> str:
        return " ".join(rnd.choices(vocab, weights, k=n_words))

    corpus = [sentence(rnd.randint(5, 60)) for _ in range(4000)]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainer=trainers.BpeTrainer(
            vocab_size=size.vocab,
            special_tokens=SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    model_dir = out / "model"
    fast.save_pretrained(model_dir)

    # Examples: grow each pair word by word until the templated length reaches its target.
    rows = []
    for target in _target_lengths(size, rnd):
        budget = target - 10  # the ChatML scaffolding costs ~10 tokens
        p_tokens = max(2, int(budget * rnd.uniform(0.3, 0.6)))
        c_tokens = max(2, budget - p_tokens)
        rows.append(
            {"question": _fit(fast, sentence, p_tokens), "answer": _fit(fast, sentence, c_tokens)}
        )
    with open(out / "data.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")

    config = LlamaConfig(
        vocab_size=max(len(fast), size.model_vocab),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads or size.heads,
        max_position_embeddings=max(1024, size.max_len),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=size.tied,
    )
    torch.manual_seed(0)
    # Shards of 500 MB: loading (and quantizing) then holds one shard at a time.
    LlamaForCausalLM(config).save_pretrained(model_dir, max_shard_size="500MB")
    (out / "done.json").write_text(json.dumps(asdict(size)))
    return out


def _fit(tok: Any, sentence: Any, n_tokens: int) -> str:
    words = sentence(max(1, n_tokens)).split()
    ids = tok(" ".join(words), add_special_tokens=False)["input_ids"]
    while len(ids) > n_tokens and len(words) > 1:
        words = words[: max(1, int(len(words) * n_tokens / len(ids)))]
        ids = tok(" ".join(words), add_special_tokens=False)["input_ids"]
    return " ".join(words)


def records(folder: Path) -> list[dict[str, str]]:
    """kubetune's SFT records (prompt/completion), as data preparation hands them over."""
    rows = [json.loads(x) for x in (folder / "data.jsonl").read_text().splitlines()]
    return [{"prompt": r["question"], "completion": r["answer"]} for r in rows]


def length_summary(lengths: list[int]) -> dict[str, Any]:
    s = sorted(lengths)

    def pct(q: float) -> int:
        return s[min(len(s) - 1, int(q * len(s)))]

    return {
        "examples": len(s),
        "tokens": sum(s),
        "min": s[0],
        "p10": pct(0.1),
        "median": pct(0.5),
        "mean": round(sum(s) / len(s), 1),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": s[-1],
    }
