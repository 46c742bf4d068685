"""A merged causal-LM folder (Llama, Mistral, Qwen2 or Gemma architecture) -> one GGUF file.

Tensor names come from gguf's own TensorNameMap (the table llama.cpp's converter uses);
each architecture's quirks follow convert_hf_to_gguf.py (see `ARCHS`):
- Llama and Mistral (llama.cpp arch "llama"): Q and K projection rows are permuted from
  the Hugging Face rotary layout (halves) to llama.cpp's (interleaved pairs).
- Qwen2 (the DeepSeek-R1 1.5B-32B distills; arch "qwen2"): NeoX rotary, no permutation;
  q/k/v biases are written.
- Gemma (arch "gemma"): NeoX rotary; RMSNorm weights are stored as w where the model
  multiplies by (1 + w), so 1 is added; the output layer is the tied embedding.

1-D tensors (norms, biases) stay f32. f32/f16/q8_0 are written here (q8_0 needs rows
divisible by its 32-value block, other rows fall back to f16). q4_0 and q4_k_m go through
llama.cpp's own quantizer (gguf_quantize.py) from an f16 file. The tokenizer is written
as a GPT-2 style BPE vocabulary (tokens, types, merges, special ids, chat template).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_trainer.errors import ConfigError

from .gguf_quantize import LLAMA_CPP_TYPES, quantize, require_llama_cpp

OUT_TYPES = ("f32", "f16", "q8_0", *LLAMA_CPP_TYPES)


@dataclass(frozen=True)
class Arch:
    gguf_arch: str  # gguf.MODEL_ARCH member name
    permute_qk: bool  # HF rotary halves -> llama.cpp interleaved pairs (arch "llama" only)
    norm_plus_one: bool = False  # Gemma's RMSNorm scales by (1 + w)


ARCHS: dict[str, Arch] = {
    "LlamaForCausalLM": Arch("LLAMA", permute_qk=True),
    "MistralForCausalLM": Arch("LLAMA", permute_qk=True),
    "Qwen2ForCausalLM": Arch("QWEN2", permute_qk=False),
    "GemmaForCausalLM": Arch("GEMMA", permute_qk=False, norm_plus_one=True),
}
SUPPORTED_ARCHS = tuple(ARCHS)


@dataclass
class GGUFResult:
    path: str
    outtype: str
    tensors: int
    size: int
    fallback_f16: list[str]  # tensors written f16 because q8_0 did not fit their shape


def _permute(w: Any, n_head: int) -> Any:
    """HF rotary halves -> llama.cpp interleaved pairs, per head (rows of q_proj/k_proj)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def arch_of(model_dir: Path, cfg: dict[str, Any]) -> tuple[str, Arch]:
    """The folder's architecture, or ConfigError naming the supported ones."""
    archs = cfg.get("architectures") or []
    for a in archs:
        if a in ARCHS:
            return a, ARCHS[a]
    raise ConfigError(
        f"{model_dir}: GGUF export supports {', '.join(SUPPORTED_ARCHS)}, not "
        f"{', '.join(archs) or 'an unnamed architecture'}; export with --merge only "
        "(and convert with llama.cpp's convert_hf_to_gguf.py)"
    )


def pre_tokenizer_name(model_dir: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (it refuses names it does not know).

    A plain byte-level BPE with the GPT-2 split regex is "gpt-2" (SmolLM2 and the tiny
    built-in models); anything else gets "default", llama.cpp's generic split, which may
    tokenize some strings differently: check generations after loading such a file.
    """
    path = model_dir / "tokenizer.json"
    pre = (
        json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer")
        if path.is_file()
        else None
    )
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    return "default"


def _vocab(model_dir: Path, n_vocab: int, writer: Any) -> None:
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    special = set(tok.all_special_ids)
    added = set(tok.get_added_vocab().values())
    by_id = {i: t for t, i in tok.get_vocab().items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i not in by_id:  # embedding rows beyond the tokenizer: padding entries
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in special:
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(model_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/pad ids and the chat template, read from the tokenizer files.
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab).add_to_gguf(writer)


def write_gguf(model_dir: str | Path, out_file: str | Path, outtype: str = "f16") -> GGUFResult:
    """Write `out_file` of type `outtype` (one of OUT_TYPES) from a merged model folder."""
    if outtype not in OUT_TYPES:
        raise ConfigError(f"GGUF type {outtype!r}: use one of {', '.join(OUT_TYPES)}")
    model_dir, out_file = Path(model_dir), Path(out_file)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{model_dir}: no config.json (a merged model folder is needed)")
    arch_of(model_dir, json.loads(cfg_path.read_text()))  # refuse before any work
    if outtype not in LLAMA_CPP_TYPES:
        return _write(model_dir, out_file, outtype)
    require_llama_cpp(outtype)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=".gguf-") as tmp:
        src = _write(model_dir, Path(tmp) / "f16.gguf", "f16")
        quantize(src.path, out_file, outtype)
        return GGUFResult(str(out_file), outtype, src.tensors, out_file.stat().st_size, [])


def _write(model_dir: Path, out_file: Path, outtype: str) -> GGUFResult:
    import gguf
    import numpy as np
    from safetensors import safe_open

    cfg = json.loads((model_dir / "config.json").read_text())
    _, arch = arch_of(model_dir, cfg)
    n_layer, n_head = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]  # fmt: skip
    model_arch = getattr(gguf.MODEL_ARCH, arch.gguf_arch)

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{model_dir}: no *.safetensors weights (export --merge first)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[model_arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(cfg.get("max_position_embeddings", 2048))
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
    rope = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(rope))
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_file_type(ftype)
    _vocab(model_dir, cfg["vocab_size"], writer)

    names = gguf.get_tensor_name_map(model_arch, n_layer)
    fallback: list[str] = []
    count = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                if key.endswith("rotary_emb.inv_freq"):
                    continue  # recomputed by llama.cpp from rope_freq_base
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None and key == "lm_head.weight" and arch.gguf_arch == "GEMMA":
                    continue  # llama.cpp's Gemma always reads the output from token_embd
                if name is None:
                    raise ConfigError(f"{file.name}: no GGUF name for tensor {key!r}")
                data = f.get_tensor(key).float().numpy()  # bf16 has no numpy dtype
                if arch.permute_qk and key.endswith("q_proj.weight"):
                    data = _permute(data, n_head)
                elif arch.permute_qk and key.endswith("k_proj.weight"):
                    data = _permute(data, n_kv)
                if arch.norm_plus_one and key.endswith("norm.weight"):
                    data = data + 1.0
                if data.ndim == 1 or outtype == "f32":
                    writer.add_tensor(name, data)
                elif outtype == "q8_0" and data.shape[-1] % 32 == 0:
                    q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
                    writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                else:
                    if outtype == "q8_0":
                        fallback.append(name)
                    writer.add_tensor(name, data.astype(np.float16))
                count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GGUFResult(str(out_file), outtype, count, out_file.stat().st_size, fallback)
