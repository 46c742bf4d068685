"""What to fine-tune: the base model, the adapter and the quantization."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ._base import SpecModel
from .uris import BUILTIN_MODELS, check_model_uri, check_tokenizer_uri

Task = Literal["causal_lm", "sequence_classification", "masked_lm"]
Bias = Literal["none", "all", "lora_only"]
QuantMode = Literal["none", "8bit", "4bit"]
QuantType = Literal["nf4", "fp4"]
ComputeDtype = Literal["auto", "bf16", "fp16", "fp32"]


class ModelSpec(SpecModel):
    base: str = Field(
        description=(
            "Base model: a Hugging Face id (org/name), a local folder, an s3:// prefix, or a "
            f"built-in offline model ({', '.join('builtin:' + m for m in BUILTIN_MODELS)})."
        ),
        min_length=1,
        examples=["meta-llama/Llama-2-7b-hf", "builtin:tiny-llama", "s3://models/llama3-8b"],
    )
    revision: str | None = Field(
        default=None,
        description="Git revision (branch, tag or commit) of a hub model.",
        pattern=r"^[^\s\x00-\x1f]+$",  # pydantic's and the API server's `$`: the very end
    )
    tokenizer: str | None = Field(
        default=None,
        description="Tokenizer location when it differs from the base model: a Hugging Face "
        "id, a local folder or an s3:// prefix.",
    )
    gguf_file: str | None = Field(
        default=None,
        description="File name of a GGUF checkpoint inside `base` (llama.cpp format); "
        "it is dequantized and converted once, then cached.",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.gguf$",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Run model code shipped with the checkpoint. Off by default: it executes "
        "arbitrary Python from the model repository.",
    )
    task: Task = Field(
        default="causal_lm",
        description="Model head: causal_lm (Llama, Mistral, DeepSeek-R1 distills), or "
        "sequence_classification / masked_lm for BERT-style encoders.",
    )
    num_labels: int | None = Field(
        default=None, ge=2, le=1000, description="Classes for sequence_classification."
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        default="auto",
        description="Attention kernel; auto picks sdpa, flash_attention_2 on GPU, and on a CPU "
        "attention inside each example for position_ids-packed rows of 512+ tokens.",
    )

    @field_validator("base")
    @classmethod
    def _base_uri(cls, v: str) -> str:
        return check_model_uri(v)

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_uri(cls, v: str | None) -> str | None:
        return None if v is None else check_tokenizer_uri(v)


class AdapterSpec(SpecModel):
    type: Literal["lora"] = Field(default="lora", description="Adapter method (LoRA).")
    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(default=32, gt=0, description="LoRA scaling alpha (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names to adapt; ['all-linear'] adapts every linear layer. "
        "BERT-style encoders use ['query', 'value'].",
    )
    bias: Bias = Field(default="none", description="Which biases to train.")
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. classifier).",
    )

    @field_validator("target_modules", "modules_to_save")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"module name {name[:100]!r} may hold only letters, digits, _ . -")
        return v


class QuantizationSpec(SpecModel):
    mode: QuantMode = Field(
        default="none",
        description="Load the base in 4-bit (QLoRA), 8-bit, or unquantized (none).",
    )
    quant_type: QuantType = Field(default="nf4", description="4-bit data type (4bit only).")
    double_quant: bool = Field(
        default=True, description="Quantize the quantization constants too (4bit only)."
    )
    compute_dtype: ComputeDtype = Field(
        default="auto", description="Dtype of matmuls over 4-bit weights (4bit only)."
    )
    quant_storage_dtype: Literal["uint8", "bf16", "fp16", "fp32"] | None = Field(
        default=None,
        description="Storage dtype of packed 4-bit weights; must equal the compute dtype "
        "for DeepSpeed ZeRO-3 or FSDP sharding (4bit only).",
    )
