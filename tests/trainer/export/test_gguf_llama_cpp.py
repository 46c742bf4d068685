"""The GGUF that `kubetune export --gguf` writes runs in llama.cpp itself.

llama-cpp-python (built from its sdist by `make install`: PyPI has no wheel) loads the
exported file on the CPU. Its tokenizer must cut text into the ids the Hugging Face
tokenizer gives (the `tokenizer.ggml.pre` choice), its next-token logits must match the
merged transformers model's (the Q/K row permutation, norms, tied embeddings), and the
token it generates must be the one transformers would pick.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from kubetune_trainer.export.gguf_export import write_gguf
from kubetune_trainer.export.merge import merge_adapter

TEXT = "What is the price of AAPL today? The answer cites its sources."


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_llama_cpp_runs_the_exported_gguf(
    tiny_dirs: dict[str, Path], tmp_path: Path, outtype: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = tmp_path / "merged"
    merge_adapter(str(tiny_dirs["adapter"]), merged)
    gguf_path = write_gguf(merged, tmp_path / f"m-{outtype}.gguf", outtype).path
    tok = AutoTokenizer.from_pretrained(str(merged))
    hf = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()

    llm = llama_cpp.Llama(str(gguf_path), n_ctx=128, n_threads=1, logits_all=True,
                          verbose=False)  # fmt: skip
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
    assert llm.n_vocab() == hf.config.vocab_size

    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    with torch.no_grad():
        want = hf(input_ids=torch.tensor([ids])).logits[0].numpy()
    spread = float(want.max() - want.min())
    tol = {"f16": 0.01, "q8_0": 0.05}[outtype] * spread  # the weights' own rounding
    assert np.abs(got - want).max() < tol, (np.abs(got - want).max(), spread)
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9

    token = next(llm.generate(ids, temp=0.0, reset=True))  # greedy
    assert token == int(want[-1].argmax())  # the token transformers would pick
    assert llm.detokenize([token]).decode() == tok.decode([token])


@pytest.mark.slow
def test_llama_cpp_runs_real_smollm2_exported_by_kubetune(
    model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SmolLM2 vocabulary (49k byte-level BPE, chat tokens) survives the export.

    f16: llama.cpp computes q8_0 matmuls with quantized activations, which moves logits by
    ~2.5 here (as much as for the Q4_1 file the wheel ships), enough to flip a close token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune_trainer.modeling import builtin

    monkeypatch.setenv("KUBETUNE_CACHE", str(model_cache))  # converted once per session
    src = builtin.smollm2_dir()
    gguf_path = write_gguf(src, tmp_path / "smollm2-f16.gguf", "f16").path
    tok = AutoTokenizer.from_pretrained(str(src))
    llm = llama_cpp.Llama(str(gguf_path), n_ctx=256, n_threads=2, logits_all=True,
                          verbose=False)  # fmt: skip
    texts = [
        "Q: Did AAPL close above <PRICE> on 2024-03-01? Cite [1] and add a risk note.",
        "  Genomics: BRCA1 p.Val600Glu, rs429358 — naïve café ☕ 12,345.67%\n\ttabs",
        tok.apply_chat_template([{"role": "user", "content": "Hi!"}], tokenize=False),
    ]
    for text in texts:
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == want, text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    hf = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    assert np.abs(got - want).max() < 0.01 * float(want.max() - want.min())
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.95
    answer = [t for _, t in zip(range(8), llm.generate(ids, temp=0.0, reset=True), strict=False)]
    assert "Paris" in tok.decode(answer)  # the real model still knows, through llama.cpp
