"""deepspeed_config: ZeRO-2/3 from the spec, bound to the Trainer's own settings."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_api.loader import InvalidSpecError, parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.distributed import check_deepspeed, deepspeed_config
from kubetune_trainer.errors import ConfigError


def make_job(
    distributed: dict[str, Any],
    training: dict[str, Any] | None = None,
    quantization: dict[str, Any] | None = None,
) -> FineTuneJob:
    spec: dict[str, Any] = {
        "model": {"base": "builtin:tiny-llama"},
        "dataset": {"source": "data.jsonl", "format": "instruction"},
        "distributed": distributed,
        "training": training or {},
    }
    if quantization:
        spec["quantization"] = quantization
    return parse_job(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "ds"},
            "spec": spec,
        }
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
    cfg = deepspeed_config(make_job({"deepspeed": stage}))
    assert all(cfg[k] == "auto" for k in AUTO_KEYS)
    assert cfg["bf16"] == {"enabled": "auto"}
    assert cfg["fp16"] == {"enabled": "auto"}
    assert cfg["zero_optimization"]["stage"] == int(stage[-1])
    # Without offload the Trainer's own optimizer (spec.training.optimizer) is used.
    assert "optimizer" not in cfg


def test_zero2_has_no_zero3_keys() -> None:
    zero = deepspeed_config(make_job({"deepspeed": "zero2"}))["zero_optimization"]
    assert not any(k.startswith("stage3") or k == "offload_param" for k in zero)


def test_zero3_gathers_weights_for_saving() -> None:
    zero = deepspeed_config(make_job({"deepspeed": "zero3"}))["zero_optimization"]
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_param" not in zero and "offload_optimizer" not in zero


def test_offload_zero2_moves_the_optimizer_only() -> None:
    cfg = deepspeed_config(make_job({"deepspeed": "zero2", "cpuOffload": True}))
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in cfg["zero_optimization"]
    # DeepSpeed's CPU Adam steps offloaded state; hyper-parameters still come from the Trainer.
    assert cfg["optimizer"]["type"] == "AdamW"
    assert set(cfg["optimizer"]["params"].values()) == {"auto"}


def test_offload_zero3_moves_parameters_too() -> None:
    zero = deepspeed_config(make_job({"deepspeed": "zero3", "cpuOffload": True}))[
        "zero_optimization"
    ]
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"


def test_none_has_no_config() -> None:
    with pytest.raises(ConfigError, match=r"spec\.distributed\.deepspeed"):
        deepspeed_config(make_job({}))
    check_deepspeed(make_job({}, {"optimizer": "sgd"}))  # no DeepSpeed: no DeepSpeed rules


@pytest.mark.parametrize("optimizer", ["sgd", "adamw_8bit", "paged_adamw_8bit"])
def test_offload_needs_an_offloadable_optimizer(optimizer: str) -> None:
    job = make_job({"deepspeed": "zero2", "cpuOffload": True}, {"optimizer": optimizer})
    with pytest.raises(ConfigError) as err:
        deepspeed_config(job)
    assert str(err.value).startswith("spec.training.optimizer")
    assert "cpuOffload" in str(err.value)


def test_bitsandbytes_optimizer_cannot_step_zero3() -> None:
    job = make_job({"deepspeed": "zero3"}, {"optimizer": "adamw_8bit"})
    with pytest.raises(ConfigError, match=r"^spec\.training\.optimizer: 'adamw_8bit'"):
        check_deepspeed(job)
    check_deepspeed(make_job({"deepspeed": "zero2"}, {"optimizer": "adamw_8bit"}))


def test_spec_rules_for_quantized_zero3_still_apply() -> None:
    """The contract rejects these before any config is built (spec.py validators)."""
    with pytest.raises(InvalidSpecError, match="quantStorageDtype"):
        make_job({"deepspeed": "zero3"}, quantization={"mode": "4bit"})
    ok = make_job(
        {"deepspeed": "zero3"}, quantization={"mode": "4bit", "quantStorageDtype": "bf16"}
    )
    assert deepspeed_config(ok)["zero_optimization"]["stage"] == 3
    with pytest.raises(InvalidSpecError, match="8-bit"):
        make_job({"deepspeed": "zero3"}, quantization={"mode": "8bit"})


def test_config_is_accepted_by_transformers() -> None:
    """The HF integration parses it and fills every "auto" from TrainingArguments."""
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    cfg = deepspeed_config(
        make_job({"deepspeed": "zero3", "cpuOffload": True}, {"maxGradNorm": 0.5})
    )
    hf = HfTrainerDeepSpeedConfig(cfg)
    args = TrainingArguments(
        output_dir="/tmp/unused",
        per_device_train_batch_size=3,
        gradient_accumulation_steps=4,
        max_grad_norm=0.5,
        use_cpu=True,
        report_to=[],
    )
    hf.trainer_config_process(args)
    assert hf.config["train_micro_batch_size_per_gpu"] == 3
    assert hf.config["gradient_accumulation_steps"] == 4
    assert hf.config["gradient_clipping"] == 0.5
    assert hf.is_zero3() and hf.is_offload()
