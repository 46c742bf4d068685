"""Memory estimate of a job: model config numbers in, bytes out (no torch, no weights).

Shared by the trainer (which counts parameters exactly on a meta-device model) and the
operator (which can read a base's config.json before creating the Job: `decoder_numbers`).
The numbers are per process (rank) on its device; deliberately simple and a little
pessimistic: refusing at start beats an OOM at step 900.

Sharding (distributed.deepspeed over distributed.worldSize ranks, W):
- none (DDP): every rank holds everything.
- zero2: gradients and optimizer states are partitioned (/W); weights are whole.
- zero3: weights too (/W), plus one block's weights gathered at a time while it runs.
- cpuOffload on a GPU: optimizer states leave the device (zero2/zero3), and with zero3
  the weight shards too (only the gathered block stays). On a CPU, offload moves nothing.
Ranks on one CPU host share its memory: a CPU estimate counts processesPerNode ranks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .spec import FineTuneJobSpec

GIB = 1024**3
HIGH_WATER = 0.80  # above this share of memory, gradient checkpointing: auto turns on
OVERHEAD = {"cpu": int(1.0 * GIB), "cuda": int(1.5 * GIB)}  # framework, CUDA context
LORA_BYTES = {"weight": 4, "grad": 4, "adam": 8}  # fp32 LoRA weight, grad, exp_avg + exp_avg_sq
# Activation bytes kept for backward per token, per layer and hidden unit, by device and
# activation bytes. GPU: Korthikanti et al.'s ~34 in half precision (twice that in fp32),
# not measured here. CPU: measured (bench/findings.md, "The memory preflight, measured"):
# ~100 in bf16 autocast, which keeps the residual stream and the norms in fp32, ~160 in
# fp32; the estimate's old 34/68 were 2.5x low there.
LAYER_BYTES = {("cuda", 2): 34, ("cuda", 4): 68, ("cpu", 2): 100, ("cpu", 4): 160}
# Per logit: the head's output, the loss's fp32 copy and log-softmax, and their gradients
# (measured ~16.5 on the CPU; the old estimate counted 8).
LOGIT_BYTES = 16


@dataclass(frozen=True)
class ModelNumbers:
    """What the estimate needs from a model's config."""

    params_total: int
    params_quantizable: int  # Linear weights inside the blocks (what bitsandbytes packs)
    lora_per_rank: int  # sum of in + out features over the LoRA-targeted Linear layers
    vocab: int
    hidden: int
    layers: int
    heads: int


@dataclass
class MemoryEstimate:
    params_total: int
    params_quantizable: int
    params_lora: int
    weights: int
    adapter_and_optimizer: int
    activations: int
    overhead: int
    available: int
    gradient_checkpointing: bool
    notes: list[str] = field(default_factory=list)
    world_size: int = 1
    sharding: str = "none"  # none | zero2 | zero3 (+ " + cpu offload")
    offloaded: int = 0  # bytes moved to host memory by cpuOffload (not counted in total)
    ranks_sharing_memory: int = 1  # CPU ranks on one host share its memory

    @property
    def total(self) -> int:
        per_rank = self.weights + self.adapter_and_optimizer + self.activations + self.overhead
        return per_rank * self.ranks_sharing_memory

    @property
    def ratio(self) -> float:
        return self.total / max(self.available, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "ratio": round(self.ratio, 4)}

    def table(self) -> str:
        def g(n: int) -> str:
            return f"{n / GIB:.2f} GiB"

        shard = (
            ""
            if self.sharding == "none"
            else f" per rank ({self.sharding}, {self.world_size} ranks)"
        )
        ranks = (
            f" x {self.ranks_sharing_memory} ranks on this host"
            if self.ranks_sharing_memory > 1
            else ""
        )
        return (
            f"weights {g(self.weights)} ({self.params_total / 1e6:.1f}M params), "
            f"LoRA+grads+optimizer {g(self.adapter_and_optimizer)} "
            f"({self.params_lora / 1e6:.2f}M trainable), activations {g(self.activations)} "
            f"(gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}), "
            f"overhead {g(self.overhead)}{shard}{ranks}: total {g(self.total)} of "
            f"{g(self.available)} available ({self.ratio:.0%})"
        )  # fmt: skip


class DoesNotFit(ValueError):
    """The job cannot fit; the message carries the numbers and the recommendations."""


def weight_bytes(spec: FineTuneJobSpec, n: ModelNumbers, dense: int) -> int:
    """The whole base's weights as loaded (quantized Linear layers packed)."""
    q = spec.quantization
    if q.mode == "4bit":
        # 0.5 B/param plus absmax constants: fp32 per 64 values, or ~8-bit when double-quantized.
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if q.double_quant else 4 / 64)
        return int(n.params_quantizable * per + (n.params_total - n.params_quantizable) * dense)
    if q.mode == "8bit":
        return int(
            n.params_quantizable * (1 + 4 / 4096) + (n.params_total - n.params_quantizable) * dense
        )
    return n.params_total * dense  # fmt: skip


def dense_bytes(spec: FineTuneJobSpec, precision: str, device: str) -> int:
    """Bytes per frozen dense (unquantized) weight while training. Half precision on a GPU;
    on a CPU, fp32 under autocast, except that a bf16 job stores its frozen weights in bf16
    (the trainer's modeling/frozen16) unless DeepSpeed, whose engine keeps the dtypes it
    was configured with, runs it."""
    if device == "cuda":
        return 2 if precision in ("bf16", "fp16") else 4
    return 2 if precision == "bf16" and spec.distributed.deepspeed == "none" else 4


def estimate_bytes(
    spec: FineTuneJobSpec,
    n: ModelNumbers,
    precision: str,
    available: int,
    device: str,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    """Per-rank bytes of `spec` on `device` ("cuda" or "cpu") for a model of numbers `n`."""
    d = spec.distributed
    stage = d.deepspeed
    world = d.world_size if stage != "none" else 1
    offload = d.cpu_offload and stage != "none" and device == "cuda"
    whole = weight_bytes(spec, n, dense_bytes(spec, precision, device))
    offloaded = 0
    if stage == "zero3" and world > 1:
        shard, gathered = -(-whole // world), whole // max(n.layers, 1)
        weights = gathered if offload else shard + gathered
        offloaded += shard if offload else 0
    else:
        weights = whole
    lora = n.lora_per_rank * spec.adapter.r
    b = {k: lora * v for k, v in LORA_BYTES.items()}
    if stage == "none":
        adapter_opt = b["weight"] + b["grad"] + b["adam"]
    else:
        lora_w = -(-b["weight"] // world) if stage == "zero3" else b["weight"]
        grads, adam = -(-b["grad"] // world), -(-b["adam"] // world)
        if offload:
            offloaded += adam + (lora_w if stage == "zero3" else 0)
            adam, lora_w = 0, (0 if stage == "zero3" else lora_w)
        adapter_opt = lora_w + grads + adam
    t = spec.training
    tokens, seq = spec.dataset.max_seq_length * t.micro_batch_size, spec.dataset.max_seq_length
    act_bytes = 2 if precision in ("bf16", "fp16") else 4
    per_layer = LAYER_BYTES[("cuda" if device == "cuda" else "cpu", act_bytes)] * tokens * n.hidden
    # 5·a·s²·b for eager attention scores; sdpa avoids most of it: counted once, not per layer
    scores = 5 * n.heads * seq * tokens * act_bytes // 2
    if gradient_checkpointing:
        # each layer's input (the CPU's autocast keeps the residual stream in fp32), plus
        # the layer recomputed in backward
        kept = 4 if device == "cpu" else act_bytes
        activations = n.layers * tokens * n.hidden * kept + per_layer + scores
    else:
        activations = n.layers * per_layer + scores
    if spec.model.task in ("causal_lm", "masked_lm"):
        activations += tokens * n.vocab * LOGIT_BYTES
    return MemoryEstimate(
        params_total=n.params_total,
        params_quantizable=n.params_quantizable,
        params_lora=lora,
        weights=int(weights),
        adapter_and_optimizer=int(adapter_opt),
        activations=int(activations),
        overhead=OVERHEAD.get(device, OVERHEAD["cpu"]),
        available=available,
        gradient_checkpointing=gradient_checkpointing,
        world_size=world,
        sharding=stage + (" + cpu offload" if offload else ""),
        offloaded=int(offloaded),
        ranks_sharing_memory=d.processes_per_node if device == "cpu" else 1,
    )


def check(
    spec: FineTuneJobSpec, n: ModelNumbers, precision: str, available: int, device: str
) -> MemoryEstimate:
    """The estimate with gradient checkpointing decided; DoesNotFit if it cannot fit."""
    gc_mode = spec.training.gradient_checkpointing
    est = estimate_bytes(spec, n, precision, available, device, gc_mode == "on")
    if gc_mode == "auto" and est.ratio > HIGH_WATER:
        est = estimate_bytes(spec, n, precision, available, device, True)
        est.notes.append(
            f"memory estimate above {HIGH_WATER:.0%} of available: gradient checkpointing "
            "turned on (training.gradientCheckpointing: auto)"
        )
    if est.ratio <= 1.0:
        return est
    raise DoesNotFit(f"the job does not fit in memory: {est.table()}. " + recommend(spec, est))


def recommend(spec: FineTuneJobSpec, est: MemoryEstimate) -> str:
    tips = []
    if spec.quantization.mode != "4bit":
        tips.append(
            f"load the base in 4-bit (quantization.mode: 4bit; weights would take about "
            f"{est.params_total * 0.52 / GIB:.1f} GiB)"
        )
    if not est.gradient_checkpointing:
        tips.append("turn on gradient checkpointing (training.gradientCheckpointing: on)")
    if spec.training.micro_batch_size > 1:
        tips.append(
            "lower training.microBatchSize and raise training.gradientAccumulation "
            "to keep the effective batch"
        )
    if spec.dataset.max_seq_length > 512:
        tips.append("lower dataset.maxSeqLength")
    if spec.distributed.deepspeed != "zero3":
        tips.append(
            "shard the weights across GPUs (distributed.deepspeed: zero3, with more "
            "distributed.nodes or processesPerNode)"
        )
    tips.append("or use a machine/GPU with more memory (resources.gpuType) or a smaller base")
    return "Recommendations: " + "; ".join(tips) + "."


def decoder_numbers(config: dict[str, Any], targets: list[str]) -> ModelNumbers:
    """ModelNumbers of a Llama-style decoder (Llama, Mistral, Qwen2, Gemma) from its
    config.json alone, for the operator (the trainer counts any model exactly instead)."""
    h, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    hd = config.get("head_dim") or h // heads
    vocab = config["vocab_size"]
    arch = (config.get("architectures") or [""])[0]
    qkv_bias = arch.startswith("Qwen2") or bool(config.get("attention_bias"))
    linears = {  # name: (in, out) of each Linear in one block
        "q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd),
        "o_proj": (heads * hd, h), "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h),
    }  # fmt: skip
    quantizable = layers * sum(i * o for i, o in linears.values())
    bias = layers * (heads * hd + 2 * kv * hd) if qkv_bias else 0
    tied = config.get("tie_word_embeddings", arch.startswith("Gemma"))  # the classes' defaults
    total = quantizable + bias + vocab * h * (1 if tied else 2) + layers * 2 * h + h
    every = targets == ["all-linear"]
    per_rank = layers * sum(i + o for k, (i, o) in linears.items() if every or k in targets)
    return ModelNumbers(total, quantizable, per_rank, vocab, h, layers, heads)


def check_before_start(
    spec: FineTuneJobSpec, config: dict[str, Any], memory_bytes: int, device: str = "cuda"
) -> MemoryEstimate:
    """The trainer's preflight for one GPU (or a CPU pod) of `memory_bytes`, from the base's
    config.json alone (no weights, no torch), for a check before any GPU is held: DoesNotFit
    carries the same message the trainer would give. precision auto is taken as bf16 (what a
    current GPU resolves it to); the trainer checks again with the real free memory."""
    precision = "bf16" if spec.training.precision == "auto" else spec.training.precision
    n = decoder_numbers(config, spec.adapter.target_modules)
    return check(spec, n, precision, memory_bytes, device)


def savings(
    spec: FineTuneJobSpec,
    n: ModelNumbers,
    precision: str,
    device: str,
    gradient_checkpointing: bool,
) -> dict[str, int]:
    """Bytes per rank each memory technique of `spec` saves, from this same estimate: the
    job with the technique against the job without it (report.json's memory.savings).

    - quantization_4bit / quantization_8bit: dense weights minus packed weights;
    - gradient_checkpointing: activations kept without it minus with it;
    - lora: a full fine-tune's fp32 gradients and AdamW states for every base weight
      minus the LoRA weights, gradients and states (sharding aside).
    """
    used = estimate_bytes(spec, n, precision, 0, device, gradient_checkpointing)
    out: dict[str, int] = {}
    mode = spec.quantization.mode
    if mode != "none":
        dense_q = spec.quantization.model_copy(update={"mode": "none"})
        dense = spec.model_copy(update={"quantization": dense_q})
        without = estimate_bytes(dense, n, precision, 0, device, gradient_checkpointing)
        out[f"quantization_{mode}"] = without.weights - used.weights
    if gradient_checkpointing:
        without = estimate_bytes(spec, n, precision, 0, device, False)
        out["gradient_checkpointing"] = without.activations - used.activations
    full = n.params_total * (LORA_BYTES["grad"] + LORA_BYTES["adam"])
    lora = used.params_lora * sum(LORA_BYTES.values())
    out["lora"] = max(full - lora, 0)
    return out
