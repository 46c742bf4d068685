"""How to train: optimisation, precision, checkpoints, evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import SpecModel

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class EarlyStopping(SpecModel):
    patience: int = Field(
        ge=1, description="Evaluations (or epochs, see patienceUnit) without improvement before "
        "stopping.",
    )  # fmt: skip
    min_delta: float = Field(
        default=0.0, ge=0,
        description="Smallest improvement of the evaluation.selectBy metric that counts.",
    )  # fmt: skip
    patience_unit: Literal["evaluations", "epochs"] = Field(
        default="evaluations",
        description="What patience counts: evaluations without improvement, or epochs since "
        "the best evaluation (training then evaluates each epoch unless evalSteps is set).",
    )


class DPOOptions(SpecModel):
    beta: float = Field(default=0.1, gt=0, le=10, description="DPO temperature beta.")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        default="sigmoid", description="DPO loss variant."
    )


class RankingOptions(SpecModel):
    margin: float = Field(default=0.1, ge=0, description="Margin of the pairwise ranking loss.")


class GenerationOptions(SpecModel):
    max_new_tokens: int = Field(default=128, ge=1, le=8192, description="Tokens to generate.")
    temperature: float = Field(default=0.0, ge=0, le=5, description="0 means greedy decoding.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Sampling seed.")


class EvaluationSpec(SpecModel):
    enabled: bool = Field(
        default=True, description="Evaluate base and tuned models after training."
    )
    max_samples: int = Field(
        default=32, ge=1, description="Validation examples used for generation."
    )
    generation: GenerationOptions = Field(
        default_factory=GenerationOptions, description="Decoding settings, recorded with results."
    )
    select_by: str = Field(
        default="eval_loss",
        pattern=r"^(eval_loss|rougeL|bleu|[a-z][a-z0-9_]{1,62})$",
        description="Metric that picks the best checkpoint (kept by retention, used by "
        "earlyStopping, and the final adapter when finalAdapter is best): eval_loss (lower is "
        "better), rougeL or bleu on generations of the first maxSamples validation examples, "
        "or a domain metric of the dataset format (e.g. exact_match, format_compliance, "
        "direction_accuracy; brier_score and unsupported_number_rate: lower is better). "
        "Metrics other than eval_loss generate text at every evaluation.",
        examples=["eval_loss", "rougeL", "format_compliance"],
    )
    metrics: list[Literal["medical_mcq", "genomics"]] = Field(
        default_factory=list,
        description="Domain metrics to add to the dataset format's own (any format): "
        "medical_mcq (answer_accuracy: the option chosen on multiple-choice questions vs "
        "the reference's); genomics (on generated answers: gene_symbol_recall, "
        "variant_recall, unsupported_variant_rate; on papers text: gene_cloze_accuracy). "
        "Their names can be used in selectBy.",
        examples=[["medical_mcq"], ["genomics"]],
    )
    final_adapter: Literal["last", "best"] = Field(
        default="last",
        description="The adapter saved at the end: the last weights, or the best checkpoint's "
        "by selectBy (always best with training.earlyStopping).",
    )


class TrainingSpec(SpecModel):
    engine: Literal["huggingface", "unsloth"] = Field(
        default="huggingface",
        description="Training stack; unsloth needs an NVIDIA GPU and the unsloth package.",
    )
    epochs: float = Field(default=1, gt=0, le=1000, description="Passes over the data.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    micro_batch_size: int = Field(default=1, ge=1, le=4096, description="Examples per device step.")
    gradient_accumulation: int = Field(
        default=1, ge=1, le=4096, description="Micro batches per step."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule."
    )
    warmup_steps: int | None = Field(default=None, ge=0, description="Warmup in optimizer steps.")
    warmup_ratio: float | None = Field(
        default=None, ge=0, lt=1, description="Warmup share of steps."
    )
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    optimizer: Literal["adamw_torch", "paged_adamw_8bit", "adamw_8bit", "sgd"] = Field(
        default="adamw_torch", description="Optimizer; paged/8-bit variants need a CUDA GPU."
    )
    # numpy's seeds are 32-bit: a larger one would fail only once training starts.
    seed: int = Field(
        default=42, ge=0, le=2**32 - 1, description="Seed for data order, init and dropout."
    )
    precision: Precision = Field(
        default="auto",
        description="auto: bf16 on a GPU that supports it, and on a CPU where a bf16 "
        "training step was measured to pay (once per machine kind; a multi-process CPU job: "
        "where the CPU has AMX), else fp32; ranks that resolve differently (unlike nodes) "
        "all train in fp32; fp16 needs a GPU.",
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto turns it on when the memory preflight is above 80%."
    )
    logging_steps: int = Field(default=10, ge=1, description="Log metrics every N steps.")
    eval_steps: int | None = Field(
        default=None, ge=1, description="Evaluate every N steps (default: each epoch)."
    )
    save_steps: int | None = Field(
        default=None, ge=1, description="Checkpoint every N steps (always at each epoch end)."
    )
    keep_last_checkpoints: int = Field(
        default=2, ge=1, le=100, description="Committed checkpoints kept (plus the best)."
    )
    early_stopping: EarlyStopping | None = Field(
        default=None, description="Stop when eval loss stops improving."
    )
    dpo: DPOOptions = Field(default_factory=DPOOptions, description="Options for objective dpo.")
    ranking: RankingOptions = Field(
        default_factory=RankingOptions, description="Options for objective ranking."
    )
