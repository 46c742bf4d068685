"""Base model + tokenizer loading, quantization and LoRA attachment.

Every base becomes a local folder first (builtin, GGUF, s3:// and local paths), so one
from_pretrained call handles quantization the same way for all of them; a Hugging Face
id goes straight to from_pretrained (offline unless the environment allows the hub).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kubetune_api.spec import FineTuneJobSpec
from kubetune_api.uris import scheme_of
from kubetune_trainer.errors import ConfigError

from . import (
    builtin,
    cpu_4bit,
    cpu_norm,
    file_pages,
    frozen16,
    lora_dropout,
    quantized,
    stream_quant,
)
from .cache import cache_root
from .gguf import convert_gguf

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    location: str  # local folder or hub id handed to from_pretrained
    display: str  # what the spec said, recorded in the model card
    tokenizer_location: str
    offline: bool


def resolve_base(spec: FineTuneJobSpec, train_texts: Iterable[str] = ()) -> BaseModel:
    """Turn spec.model.base into something from_pretrained can open, fetching if needed."""
    m = spec.model
    base, scheme = m.base, scheme_of(m.base)
    offline = True
    if scheme == "builtin":
        name = base.split(":", 1)[1]
        if name == "tiny-llama":
            path = builtin.build_tiny_llama(train_texts, spec.training.seed)
        elif name == "smollm2-135m-instruct":
            path = builtin.smollm2_dir()
        else:
            path = builtin.minilm_dir()
        location = str(path)
    elif scheme == "s3":
        location = _fetch_s3(spec, base)
    elif scheme == "file" or base.startswith((".", "/", "~")) or Path(base).is_dir():
        location = str(Path(base.removeprefix("file://")).expanduser())
        if not Path(location).is_dir():
            raise ConfigError(f"spec.model.base: local folder {location} does not exist")
    else:  # a hub id: allowed online only when the environment says so
        location = base
        offline = os.environ.get("HF_HUB_OFFLINE", "0") == "1"
    if m.gguf_file:
        gguf = Path(location) / m.gguf_file
        if not gguf.is_file():
            raise ConfigError(
                f"spec.model.ggufFile: {m.gguf_file} is not in {location}; "
                "name a .gguf file inside the base folder"
            )
        location = str(convert_gguf(gguf))
    tok = m.tokenizer or location
    if scheme_of(tok) == "s3":
        tok = _fetch_s3(spec, tok)
    return BaseModel(location=location, display=base, tokenizer_location=tok, offline=offline)


def _fetch_s3(spec: FineTuneJobSpec, uri: str) -> str:
    """A local copy of an s3:// prefix (base or tokenizer) in the model cache."""
    from kubetune_trainer.storage import fetch

    # The job's one S3-compatible store (as for the dataset and the output); one
    # bucket name on two endpoints is two models, so the endpoint is part of the key.
    endpoint = spec.output.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL") or ""
    dest = cache_root() / "s3" / hashlib.sha256(f"{endpoint}|{uri}".encode()).hexdigest()[:24]
    fetch(uri, str(dest), spec.output.s3_endpoint)
    return str(dest)


def load_tokenizer(spec: FineTuneJobSpec, base: BaseModel) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        base.tokenizer_location,
        revision=spec.model.revision,
        trust_remote_code=spec.model.trust_remote_code,
    )
    if tok.pad_token is None:  # Llama-style tokenizers ship without one
        tok.pad_token = tok.eos_token
    return tok


def quantization_config(spec: FineTuneJobSpec, precision: str) -> Any | None:
    q = spec.quantization
    if q.mode == "none":
        return None
    from transformers import BitsAndBytesConfig

    if q.mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = precision if q.compute_dtype == "auto" else q.compute_dtype
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    kwargs: dict[str, Any] = {}
    if q.quant_storage_dtype and q.quant_storage_dtype != "uint8":
        kwargs["bnb_4bit_quant_storage"] = dtypes[q.quant_storage_dtype]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=dtypes[compute],
        **kwargs,
    )


def load_base_model(
    spec: FineTuneJobSpec, base: BaseModel, precision: str, num_labels: int | None = None
) -> Any:
    """The frozen base, quantized as the spec says, on the GPU or the CPU."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
    )

    m = spec.model
    qconf = quantization_config(spec, precision)
    kwargs: dict[str, Any] = {
        "revision": m.revision,
        "trust_remote_code": m.trust_remote_code,
        # fp32 on the CPU: bf16 comes from the Trainer's autocast, and the frozen weights of
        # a bf16 job are stored in bf16 once LoRA is attached (frozen16; such a job loads
        # the checkpoint in its own dtype, below).
        "dtype": torch.float32
        if precision == "fp32" or not torch.cuda.is_available()
        else (torch.bfloat16 if precision == "bf16" else torch.float16),
    }
    if m.attn_implementation != "auto":
        kwargs["attn_implementation"] = m.attn_implementation
    if qconf is not None:
        kwargs["quantization_config"] = qconf
        # bitsandbytes places weights at load time; one process = one device.
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": local_rank} if torch.cuda.is_available() else {"": "cpu"}

    def load(location: str, cached: bool) -> Any:
        # A cached quantized copy carries its quantization config in config.json.
        args = {k: v for k, v in kwargs.items() if not (cached and k == "quantization_config")}
        if m.task == "sequence_classification":
            return AutoModelForSequenceClassification.from_pretrained(
                location, num_labels=num_labels or m.num_labels, **args
            )
        if m.task == "masked_lm":
            # An encoder saved without its MLM head (sentence-transformers) gets a fresh
            # head: list it in adapter.modulesToSave (e.g. transform) to train it.
            return AutoModelForMaskedLM.from_pretrained(location, **args)
        return AutoModelForCausalLM.from_pretrained(location, **args)

    # Cast in attach_lora, once peft has frozen the base (and, for a quantized base,
    # prepare_model_for_kbit_training has upcast what it upcasts).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    frozen_bf16 = frozen16.wanted(spec, precision, device)
    if qconf is None:
        if frozen_bf16:  # in the checkpoint's own dtype: a bf16 base makes no fp32 copy
            kwargs["dtype"] = "auto"
        model = load(base.location, cached=False)
        model._kubetune_frozen_bf16 = frozen_bf16
        return model
    extra = {"dtype": str(kwargs["dtype"]), "task": m.task, "labels": num_labels, "device": device}
    # A non-uint8 4-bit storage dtype exists for ZeRO-3/FSDP sharding: load those fresh.
    plain_storage = spec.quantization.quant_storage_dtype in (None, "uint8")
    key = quantized.cache_key(base.location, qconf, extra) if plain_storage else None
    # bitsandbytes quantizes on the device the model goes to (the GPU's kernels are faster).
    quant_device = f"cuda:{kwargs['device_map']['']}" if device == "cuda" else "cpu"

    def stream(dest: Path) -> bool:
        """Quantize the checkpoint tensor by tensor into dest (a 4-bit causal LM only)."""
        return stream_quant.supported(base.location, qconf, m.task) and stream_quant.quantize_to(
            dest, base.location, qconf, kwargs["dtype"], quant_device, m.trust_remote_code
        )

    model = quantized.load_or_quantize(key, load, base.location, stream=stream)
    if device == "cpu":
        # The pages quantizing (or anything else) read and no tensor holds: out of RSS. The
        # unquantized tensors stay views of the map, resident only where read.
        file_pages.release_unused(model)
        keep_4bit_training_layout(model)
        if spec.quantization.mode == "4bit":
            cpu_4bit.install()  # dequantize into one reused buffer, not a new tensor a call
    model._kubetune_frozen_bf16 = frozen_bf16
    return model


def keep_4bit_training_layout(model: Any) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, a Linear4bit that runs in eval mode without gradients (the
    base-model evaluation before training) repacks its weight for a gemv kernel, for good.
    Training afterwards goes through that kernel, which has no autograd formula (torch warns
    "bitsandbytes::gemv_4bit: an autograd kernel was not registered": gradients to the
    LoRA layers below are not computed correctly), and a layer with a bias (Qwen2's q/k/v)
    fails outright ("a view of a leaf Variable ... in-place operation").
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def release_checkpoint_maps(model: Any, only: torch.dtype | None = None) -> None:
    """Give the unquantized tensors (embeddings, norms) memory of their own.

    On a CPU, from_pretrained leaves them as views into the memory-mapped checkpoint, and
    one view keeps its whole shard mapped: every page quantization (or frozen16's cast)
    read stays resident (4.4 GB of file pages under a 0.6 GB 4-bit 1.1B model). Copying
    the few tensors left lets the maps go. `only`: just the tensors of that dtype (after
    frozen16's cast, the fp32 ones: its bf16 copies have memory of their own already).
    A quantized base is not copied: its packed weights may keep the maps anyway, so
    file_pages.release_unused drops the pages no tensor holds instead.
    """
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for t in store.values():
                if t is None or t.device.type != "cpu" or (only and t.dtype != only):
                    continue
                if type(t).__name__ not in ("Params4bit", "Int8Params"):
                    t.data = t.data.clone()


def attach_lora(spec: FineTuneJobSpec, model: Any, gradient_checkpointing: bool) -> Any:
    """Wrap the base in a LoRA adapter; only adapter (and modules_to_save) params train."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    a = spec.adapter
    if spec.quantization.mode != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # frozen embeddings: let checkpointed grads flow
    # peft has no masked-LM task type: the plain PeftModel passes labels through.
    task_type = {
        "sequence_classification": TaskType.SEQ_CLS,
        "causal_lm": TaskType.CAUSAL_LM,
    }.get(spec.model.task)
    targets: Any = "all-linear" if a.target_modules == ["all-linear"] else a.target_modules
    config = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha,
        lora_dropout=a.dropout,
        target_modules=targets,
        bias=a.bias,
        modules_to_save=a.modules_to_save or None,
        task_type=task_type,
    )
    frozen_bf16 = getattr(model, "_kubetune_frozen_bf16", False)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        names = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, mod in model.named_modules()
                if isinstance(mod, torch.nn.Linear)
            }
        )
        raise ConfigError(
            f"spec.adapter.targetModules: {exc}. Linear modules in this model: {', '.join(names)}"
        ) from None
    lora_dropout.install(peft_model)  # a cheaper mask than nn.Dropout's on the CPU
    cpu_norm.install(peft_model)  # RMSNorm in fewer passes (CPU tensors only)
    if frozen_bf16:
        saved = frozen16.apply(peft_model)
        release_checkpoint_maps(peft_model, only=torch.float32)
        log.info("frozen weights stored in bf16 (bf16 autocast): %d MiB saved", saved >> 20)
    if all(p.device.type == "cpu" for p in peft_model.parameters()):
        # A 4-bit base keeps its shards mapped: drop the pages of what was copied and cast.
        file_pages.release_unused(peft_model)
    return peft_model


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count by their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def model_summary(model: Any) -> str:
    """One line on the shape of the model being tuned: architecture, size, LoRA placement."""
    base = model.get_base_model()
    cfg = base.config
    heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None)
    parts = [
        f"{cfg.model_type}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
        f"{heads} heads" + (f" ({kv} kv)" if kv and kv != heads else ""),
        f"vocabulary {cfg.vocab_size:,}",
    ]
    kinds: dict[str, int] = {}
    lora = 0
    for module in base.modules():
        name = type(module).__name__
        # bitsandbytes' own layers, not peft's LoRA wrappers of the same class name
        if name in ("Linear4bit", "Linear8bitLt") and type(module).__module__.startswith(
            "bitsandbytes"
        ):
            kinds[name] = kinds.get(name, 0) + 1
        lora += hasattr(module, "lora_A") and bool(getattr(module, "lora_A", None))
    if kinds:
        parts.append(", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    targets = sorted(model.peft_config["default"].target_modules or [])
    parts.append(f"LoRA on {lora} modules ({', '.join(targets)})")
    return "; ".join(parts)
