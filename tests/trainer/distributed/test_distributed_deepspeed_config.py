"""deepspeed_config: ZeRO-2/3 from the spec, bound to the Trainer's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_api.loader import InvalidSpecError
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.distributed import deepspeed_config
from kubetune_trainer.errors import ConfigError
from tests.support.builders import MINIMAL_SPEC, make_job


def ds_job(
    distributed: dict[str, Any],
    training: dict[str, Any] | None = None,
    quantization: dict[str, Any] | None = None,
) -> FineTuneJob:
    extra = {"quantization": quantization} if quantization else {}
    return make_job(
        name="ds",
        namespace=None,
        base=MINIMAL_SPEC,
        distributed=distributed,
        training=training or {},
        **extra,
    )


# Values the HF Trainer owns: "auto" makes it fill them from TrainingArguments.
AUTO_KEYS = (
    "train_micro_batch_size_per_gpu",
    "train_batch_size",
    "gradient_accumulation_steps",
    "gradient_clipping",
)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_trainer_owned_values_are_auto(stage: str) -> None:
    cfg = deepspeed_config(ds_job({"deepspeed": stage}))
    assert all(cfg[k] == "auto" for k in AUTO_KEYS)
    assert cfg["bf16"] == {"enabled": "auto"}
    assert cfg["fp16"] == {"enabled": "auto"}
    assert cfg["zero_optimization"]["stage"] == int(stage[-1])
    # Without offload the Trainer's own optimizer (spec.training.optimizer) is used.
    assert "optimizer" not in cfg


def test_zero2_has_no_zero3_keys() -> None:
    zero = deepspeed_config(ds_job({"deepspeed": "zero2"}))["zero_optimization"]
    assert not any(k.startswith("stage3") or k == "offload_param" for k in zero)


def test_zero3_gathers_weights_for_saving() -> None:
    zero = deepspeed_config(ds_job({"deepspeed": "zero3"}))["zero_optimization"]
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_param" not in zero and "offload_optimizer" not in zero


def test_offload_zero2_moves_the_optimizer_only() -> None:
    cfg = deepspeed_config(ds_job({"deepspeed": "zero2", "cpuOffload": True}))
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in cfg["zero_optimization"]
    # DeepSpeed's CPU Adam steps offloaded state; hyper-parameters still come from the Trainer.
    assert cfg["optimizer"]["type"] == "AdamW"
    assert set(cfg["optimizer"]["params"].values()) == {"auto"}


def test_offload_zero3_moves_parameters_too() -> None:
    zero = deepspeed_config(ds_job({"deepspeed": "zero3", "cpuOffload": True}))["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"


def test_none_has_no_config() -> None:
    with pytest.raises(ConfigError, match=r"spec\.distributed\.deepspeed"):
        deepspeed_config(ds_job({}))
    ds_job({}, {"optimizer": "sgd"})  # no DeepSpeed: no DeepSpeed rules


@pytest.mark.parametrize("optimizer", ["sgd", "adamw_8bit", "paged_adamw_8bit"])
def test_offload_needs_an_offloadable_optimizer(optimizer: str) -> None:
    """A contract rule (spec.py): `kubetune validate` and the operator refuse it too."""
    with pytest.raises(InvalidSpecError) as err:
        ds_job({"deepspeed": "zero2", "cpuOffload": True}, {"optimizer": optimizer})
    (problem,) = err.value.errors
    assert problem.path == "spec.training.optimizer" and "cpuOffload" in problem.message


def test_bitsandbytes_optimizer_cannot_step_zero3() -> None:
    with pytest.raises(InvalidSpecError, match=r"'adamw_8bit' \(bitsandbytes\)"):
        ds_job({"deepspeed": "zero3"}, {"optimizer": "adamw_8bit"})
    deepspeed_config(ds_job({"deepspeed": "zero2"}, {"optimizer": "adamw_8bit"}))


def test_spec_rules_for_quantized_zero3_still_apply() -> None:
    """The contract rejects these before any config is built (spec.py validators)."""
    with pytest.raises(InvalidSpecError, match="quantStorageDtype"):
        ds_job({"deepspeed": "zero3"}, quantization={"mode": "4bit"})
    ok = ds_job({"deepspeed": "zero3"}, quantization={"mode": "4bit", "quantStorageDtype": "bf16"})
    assert deepspeed_config(ok)["zero_optimization"]["stage"] == 3
    with pytest.raises(InvalidSpecError, match="8-bit"):
        ds_job({"deepspeed": "zero3"}, quantization={"mode": "8bit"})


@pytest.mark.parametrize("offload", [False, True])
def test_config_is_bound_to_the_engines_training_arguments(tmp_path: Path, offload: bool) -> None:
    """TrainingArguments built from the engine's own training_kwargs (engine/args.py) fill
    every "auto" from the spec: micro batch 3, accumulation 4, clipping 0.5, bf16."""
    from transformers import TrainingArguments

    from kubetune_trainer.engine.args import training_kwargs

    job = ds_job(
        {"deepspeed": "zero3", "cpuOffload": offload},
        {"microBatchSize": 3, "gradientAccumulation": 4, "precision": "bf16", "maxGradNorm": 0.5},
    )
    # The precision the engine passes is hardware.resolve_precision's: the spec's own
    # "bf16" wherever bf16 runs (elsewhere it refuses before any arguments are built).
    kwargs = training_kwargs(
        job, tmp_path, job.spec.training.precision, cuda=False, has_validation=False
    )
    assert kwargs["deepspeed"]["zero_optimization"]["stage"] == 3
    args = TrainingArguments(**kwargs)  # fills the "auto" values (trainer_config_process)
    hf = args.hf_deepspeed_config
    assert hf.config["train_micro_batch_size_per_gpu"] == 3
    assert hf.config["gradient_accumulation_steps"] == 4
    assert hf.config["train_batch_size"] == 3 * 4 * args.world_size
    assert hf.config["gradient_clipping"] == 0.5
    assert hf.config["bf16"]["enabled"] is True
    assert hf.config["fp16"]["enabled"] is False
    assert hf.is_zero3() and hf.is_offload() is offload
    if offload:  # the offloaded optimizer takes the Trainer's hyper-parameters
        assert hf.config["optimizer"]["params"]["lr"] == job.spec.training.learning_rate
