"""Each family's trained adapter merges exactly, exports to GGUF (f16, q8_0 and llama.cpp's
own q4_0 / q4_k_m) and runs in llama.cpp with the transformers model's logits.

Tolerances (max |logit difference| as a share of the logits' spread over the text), from
the weights' own rounding (llama.cpp also rounds activations to 8 bits for quantized
matmuls). Measured on these tiny trained models (2026-12-06): f16 <= 0.0004, q8_0 <= 0.014,
q4_k_m <= 0.085, q4_0 <= 0.127; the limits below leave ~1.5-25x headroom.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubetune_trainer.errors import ConfigError
from kubetune_trainer.export.gguf_export import SUPPORTED_ARCHS, write_gguf
from tests.support.trainer.families import FAMILIES

TEXT = "What color is the lamp? It is gold. The lamp is gold."
TOLERANCE = {"f16": 0.01, "q8_0": 0.05, "q4_k_m": 0.15, "q4_0": 0.2}
AGREE = {"f16": 1.0, "q8_0": 0.9, "q4_k_m": 0.75, "q4_0": 0.7}  # same argmax, share of positions


def _hf_logits(folder: Path, ids: list[int], adapter: Path | None = None) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_merge_equals_base_plus_adapter(
    family: str, family_trained: Callable[[str], dict[str, Any]]
) -> None:
    from transformers import AutoTokenizer

    run = family_trained(family)
    ids = AutoTokenizer.from_pretrained(str(run["merged"]))(TEXT)["input_ids"]
    want = _hf_logits(run["base"], ids, run["adapter"])
    assert np.abs(want - _hf_logits(run["base"], ids)).max() > 1e-3  # training moved it
    np.testing.assert_allclose(_hf_logits(run["merged"], ids), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("outtype", list(TOLERANCE))
@pytest.mark.parametrize("family", FAMILIES)
def test_family_gguf_runs_in_llama_cpp(
    family: str, outtype: str, family_trained: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    import gguf
    import llama_cpp
    from transformers import AutoTokenizer

    merged = family_trained(family)["merged"]
    res = write_gguf(merged, tmp_path / f"{family}-{outtype}.gguf", outtype)
    tok = AutoTokenizer.from_pretrained(str(merged))
    meta = gguf.GGUFReader(res.path).fields
    assert meta["tokenizer.chat_template"].contents() == tok.chat_template
    want_type = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q5_0"}[outtype]
    # q4_k_m: rows of 64/128 do not fit k-quants' 256-value blocks; llama.cpp falls back.
    kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(res.path).tensors}
    assert kinds["blk.0.attn_q.weight"] == want_type, kinds

    llm = llama_cpp.Llama(res.path, n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
    assert llm.n_vocab() == json.loads((merged / "config.json").read_text())["vocab_size"]
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    want = _hf_logits(merged, ids)
    spread = float(want.max() - want.min())
    err = float(np.abs(got - want).max())
    print(f"{family} {outtype}: max |diff| {err:.5f} = {err / spread:.5f} of spread {spread:.3f}")
    assert err < TOLERANCE[outtype] * spread, (err, spread)
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= AGREE[outtype]
    if outtype == "f16":
        token = next(llm.generate(ids, temp=0.0, reset=True))  # greedy, as transformers
        assert token == int(want[-1].argmax())
    llm.close()


def test_unsupported_architecture_is_refused_naming_the_supported(tmp_path: Path) -> None:
    folder = tmp_path / "phi"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["PhiForCausalLM"]}))
    with pytest.raises(ConfigError) as err:
        write_gguf(folder, tmp_path / "out.gguf", "q4_k_m")
    msg = str(err.value)
    assert "PhiForCausalLM" in msg and all(a in msg for a in SUPPORTED_ARCHS)
    assert "Qwen2ForCausalLM" in msg and "MistralForCausalLM" in msg
    assert not (tmp_path / "out.gguf").exists()
    with pytest.raises(ConfigError, match="use one of f32, f16, q8_0, q4_0, q4_k_m"):
        write_gguf(folder, tmp_path / "out.gguf", "q3_k")


def test_4bit_types_without_llama_cpp_say_what_to_install(
    family_trained: Callable[[str], dict[str, Any]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if the package were absent
    with pytest.raises(ConfigError, match=r"pip install llama-cpp-python\), or use f16/q8_0"):
        write_gguf(family_trained("mistral")["merged"], tmp_path / "m.gguf", "q4_0")
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_export_cli_writes_4bit_gguf(
    family_trained: Callable[[str], dict[str, Any]], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from kubetune_trainer.cli import main

    run = family_trained("qwen2")
    res = CliRunner().invoke(main, ["export", str(run["adapter"]), "--dest", str(tmp_path),
                                    "--gguf", "q4_k_m", "--gguf", "f16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    q4, f16 = tmp_path / "model-q4_k_m.gguf", tmp_path / "model-f16.gguf"
    assert q4.is_file() and f16.is_file() and q4.stat().st_size < f16.stat().st_size
    assert not list(tmp_path.glob(".gguf-*"))  # the f16 intermediate is cleaned up
