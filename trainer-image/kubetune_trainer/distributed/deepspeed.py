"""DeepSpeed ZeRO configurations generated from the spec, and the rules they need.

Every value the Hugging Face Trainer also knows is "auto", so the Trainer fills it from
its own TrainingArguments (micro batch, accumulation, clipping, precision, learning rate)
and the two can never disagree. Only what the spec decides is written here: the stage,
CPU offload, and what ZeRO-3 must do to save an adapter.
"""

from __future__ import annotations

from typing import Any

from kubetune_api.spec import FineTuneJob, FineTuneJobSpec

from ..errors import ConfigError

STAGES = {"zero2": 2, "zero3": 3}


def _spec_of(job: FineTuneJob | FineTuneJobSpec) -> FineTuneJobSpec:
    return job.spec if isinstance(job, FineTuneJob) else job


def deepspeed_config(job: FineTuneJob | FineTuneJobSpec) -> dict[str, Any]:
    """The DeepSpeed config for `TrainingArguments(deepspeed=...)`, from spec.distributed.

    Raises ConfigError for `deepspeed: none` (nothing to configure). Settings DeepSpeed
    cannot run together are rejected by the contract (kubetune_api/spec.py) at parse time.
    """
    spec = _spec_of(job)
    dist = spec.distributed
    if dist.deepspeed not in STAGES:
        raise ConfigError(
            "spec.distributed.deepspeed is 'none'; there is no DeepSpeed config to build "
            "(set zero2 or zero3)"
        )
    stage = STAGES[dist.deepspeed]
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,  # no benefit without a GPU stream to overlap with
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 2:
        zero |= {"allgather_partitions": True, "reduce_scatter": True}
    else:
        zero |= {
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            # The adapter is saved from full (gathered) weights: without this, rank 0
            # would write the empty partitions ZeRO-3 leaves on each rank.
            "stage3_gather_16bit_weights_on_model_save": True,
        }
    if dist.cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        # The Trainer sets these from its bf16/fp16 arguments, which come from
        # spec.training.precision: one decision, written once.
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "steps_per_print": 10**9,  # the Trainer logs; keep DeepSpeed's own log quiet
        "wall_clock_breakdown": False,
    }
    if dist.cpu_offload:
        # ZeRO-Offload steps the optimizer on the CPU with DeepSpeed's CPU Adam; naming
        # it here makes the Trainer build that instead of torch's AdamW (which DeepSpeed
        # refuses to offload). Hyper-parameters still come from TrainingArguments.
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config
