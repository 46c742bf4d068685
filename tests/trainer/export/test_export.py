"""Merge equivalence (also for a 4-bit-trained adapter) and GGUF files read back with
gguf's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kubetune_trainer.export.gguf_export import _permute, write_gguf
from kubetune_trainer.export.merge import EXPORT_INFO, merge_adapter


def _logits(model: object, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()  # type: ignore[operator]


def _peft_logits(base: Path, adapter: Path, ids: list[int]) -> np.ndarray:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    return _logits(PeftModel.from_pretrained(m, str(adapter)).eval(), ids)


IDS = [5, 17, 42, 99, 7, 300, 12, 64]


def test_merged_logits_equal_base_plus_adapter(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    r = merge_adapter(str(tiny_dirs["adapter"]), tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    expected = _peft_logits(tiny_dirs["base"], tiny_dirs["adapter"], IDS)
    base_only = _logits(AutoModelForCausalLM.from_pretrained(str(tiny_dirs["base"])), IDS)
    assert np.abs(expected - base_only).max() > 1e-2  # the adapter matters
    np.testing.assert_allclose(_logits(merged, IDS), expected, atol=1e-4, rtol=0)
    assert "adapter_model.safetensors" not in r.files and "model.safetensors" in r.files
    info = json.loads((tmp_path / "merged" / EXPORT_INFO).read_text())
    assert info["base"] == str(tiny_dirs["base"]) and info["trained_quantization"] == "unknown"


def test_4bit_trained_adapter_merges_into_full_precision(
    tiny_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from kubetune_trainer.engine.adapter import model_card, save_adapter
    from tests.support.trainer.tiny_lm import finance_job

    # An adapter made on the 4-bit NF4 base, saved by the engine with its model card.
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.float32)  # fmt: skip
    q = AutoModelForCausalLM.from_pretrained(
        str(tiny_dirs["base"]), quantization_config=bnb, device_map="cpu"
    )
    torch.manual_seed(3)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    peft_q = get_peft_model(q, cfg)
    assert (
        "Linear4bit"
        in type(peft_q.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__
    )
    job = finance_job(tiny_dirs["data"], str(tiny_dirs["base"]), quantization={"mode": "4bit"})
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["base"]))
    card = model_card(job, str(tiny_dirs["base"]), {"precision": "fp32"})
    save_adapter(peft_q, tok, tmp_path / "adapter4", card)

    r = merge_adapter(str(tmp_path / "adapter4"), tmp_path / "merged4")
    assert r.trained_quantization == "4bit"
    assert r.merged_into == "float32 base weights (reloaded unquantized)"
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged4"))
    assert merged.config.to_dict().get("quantization_config") is None
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    expected = _peft_logits(tiny_dirs["base"], tmp_path / "adapter4", IDS)
    np.testing.assert_allclose(_logits(merged, IDS), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_gguf_reads_back(tiny_dirs: dict[str, Path], tmp_path: Path, outtype: str) -> None:
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    merged = tmp_path / "merged"
    merge_adapter(str(tiny_dirs["adapter"]), merged)
    cfg = json.loads((merged / "config.json").read_text())
    res = write_gguf(merged, tmp_path / f"m-{outtype}.gguf", outtype)
    reader = gguf.GGUFReader(res.path)

    def field(key: str) -> object:
        f = reader.fields[key]
        return f.contents()

    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == cfg["num_hidden_layers"]
    assert field("llama.attention.head_count_kv") == cfg["num_key_value_heads"]
    n = cfg["num_hidden_layers"]
    # token_embd + output_norm + 9 per block; embeddings are tied, so no output.weight.
    assert len(reader.tensors) == res.tensors == 2 + 9 * n
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors
    per_block = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                 "ffn_gate", "ffn_up", "ffn_down")  # fmt: skip
    expected_names = {f"blk.{i}.{p}.weight" for i in range(n) for p in per_block}
    assert expected_names | {"token_embd.weight", "output_norm.weight"} == set(tensors)
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    # GGUF lists dimensions fastest-first: (in, out) for a torch (out, in) matrix.
    assert list(tensors["token_embd.weight"].shape) == [h, v]
    assert list(tensors["blk.0.attn_k.weight"].shape) == [h, kv]
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [ff, h]
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    want = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[outtype]
    assert tensors["blk.0.ffn_up.weight"].tensor_type == want
    # Values: Q rows permuted to llama.cpp's rotary layout, within the type's precision.
    sd = load_file(str(merged / "model.safetensors"))
    q = sd["model.layers.0.self_attn.q_proj.weight"].numpy()
    t = tensors["blk.0.attn_q.weight"]
    got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(q.shape)
    tol = 1e-3 if outtype == "f16" else np.abs(q).max() / 100
    np.testing.assert_allclose(got, _permute(q, cfg["num_attention_heads"]), atol=tol)
    assert not np.allclose(got, q, atol=tol)  # the permutation really moved rows
    # Tokenizer metadata.
    tok = AutoTokenizer.from_pretrained(str(merged))
    tokens = field("tokenizer.ggml.tokens")
    assert field("tokenizer.ggml.model") == "gpt2" and len(tokens) == v
    assert field("tokenizer.ggml.pre") == "gpt-2"  # byte-level BPE with the GPT-2 regex
    assert tokens[tok.eos_token_id] == tok.eos_token
    assert field("tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert len(field("tokenizer.ggml.merges")) > 0
    assert "<|im_start|>" in field("tokenizer.chat_template")


def test_export_cli(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.cli import main

    res = CliRunner().invoke(
        main,
        ["export", str(tiny_dirs["adapter"]), "--dest", str(tmp_path), "--merge", "--gguf", "q8_0"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "model-q8_0.gguf").is_file() and "quantization unknown" in res.output
    res = CliRunner().invoke(main, ["export", str(tiny_dirs["adapter"]), "--dest", str(tmp_path)])
    assert res.exit_code == 2 and "nothing to do" in res.output
