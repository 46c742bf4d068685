"""Start-up decisions: precision auto, the 4-/8-bit settings, the TrainingArguments mapping,
and gradient checkpointing turned on (and said) when memory is above 80%."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, TrainingArguments

from kubetune_trainer.engine.args import training_kwargs
from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import load_all, training_texts
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.modeling import hardware, loader, preflight
from kubetune_trainer.modeling.hardware import SystemReport, resolve_precision
from kubetune_trainer.modeling.loader import quantization_config
from tests.support.builders import make_job, prepared

GIB = 1024**3


def system(device: str, bf16: bool, amx: bool = False, fast: bool | None = None) -> SystemReport:
    return SystemReport(
        device=device,
        device_name="NVIDIA L4" if device == "cuda" else "Xeon",
        device_count=1,
        memory_total_bytes=24 * GIB,
        memory_available_bytes=20 * GIB,
        cpu_count=8,
        bf16_supported=bf16,
        python="3.11",
        cpu_amx=amx,
        cpu_bf16_fast=fast,
    )


@pytest.mark.parametrize(
    ("machine", "wanted", "expected"),
    [
        (system("cuda", bf16=True), "auto", "bf16"),
        (system("cuda", bf16=False), "auto", "fp32"),  # a T4: no bf16
        # CPUs: bf16 only where a bf16 training step was measured to pay (cpu_precision),
        # whatever the flags say (avx512_bf16 without AMX: bf16 works, at 0.62x of fp32).
        (system("cpu", bf16=True, amx=True, fast=True), "auto", "bf16"),
        (system("cpu", bf16=True, amx=True, fast=False), "auto", "fp32"),
        (system("cpu", bf16=True, amx=False, fast=False), "auto", "fp32"),
        (system("cpu", bf16=False, fast=True), "auto", "fp32"),
        (system("cpu", bf16=False), "auto", "fp32"),
        (system("cpu", bf16=True), "bf16", "bf16"),  # an explicit choice is kept
        (system("cpu", bf16=True, amx=True), "fp32", "fp32"),
        (system("cuda", bf16=True), "fp16", "fp16"),
    ],
)
def test_precision_auto_and_explicit(
    tmp_path: Path, machine: SystemReport, wanted: str, expected: str
) -> None:
    job = make_job(tmp_path, training={"precision": wanted})
    assert resolve_precision(job.spec, machine) == expected


def test_cpu_bf16_speed_is_measured_only_for_precision_auto(tmp_path: Path) -> None:
    here = hardware.system_report()
    assert here.cpu_bf16_fast is None  # start-up (and the notebook's view) measure nothing
    if here.device != "cpu" or not here.bf16_supported:
        pytest.skip("the measurement is for CPUs with bf16")
    for wanted in ("fp32", "bf16"):  # an explicit choice needs no measurement
        resolve_precision(make_job(tmp_path, training={"precision": wanted}).spec, here)
        assert here.cpu_bf16_fast is None
    got = resolve_precision(make_job(tmp_path, training={"precision": "auto"}).spec, here)
    assert here.cpu_bf16_fast is not None  # measured (or read from the cache) and reported
    assert got == ("bf16" if here.cpu_bf16_fast else "fp32")
    assert hardware.auto_precision(dataclasses.replace(here, cpu_bf16_fast=None)) == "fp32"


@pytest.mark.parametrize("amx", [True, False])
def test_ranks_of_a_distributed_cpu_job_resolve_auto_alike_without_a_timing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amx: bool
) -> None:
    # A timing per rank disagreed under load (CI: rank 0 fp32, rank 1 bf16, then a gloo
    # size mismatch in DDP's first broadcast): ranks go by the AMX flag, measuring nothing.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(hardware, "cpu_bf16_fast", lambda _name: pytest.fail("measured"))
    machine = system("cpu", bf16=True, amx=amx)
    got = resolve_precision(make_job(tmp_path, training={"precision": "auto"}).spec, machine)
    assert got == ("bf16" if amx else "fp32") and machine.cpu_bf16_fast is amx


@pytest.mark.parametrize(
    ("wanted", "machine", "field"),
    [("fp16", system("cpu", bf16=True), "fp16 needs a CUDA GPU"),
     ("bf16", system("cuda", bf16=False), "bf16 is not supported on this cuda")],
)  # fmt: skip
def test_precision_this_machine_cannot_run_is_refused(
    tmp_path: Path, wanted: str, machine: SystemReport, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        resolve_precision(make_job(tmp_path, training={"precision": wanted}).spec, machine)


def test_4bit_settings_reach_bitsandbytes(tmp_path: Path) -> None:
    nf4 = make_job(tmp_path, quantization={"mode": "4bit"}).spec  # the defaults: QLoRA
    q = quantization_config(nf4, "bf16")
    assert q.load_in_4bit and not q.load_in_8bit
    assert (q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == ("nf4", True)
    assert q.bnb_4bit_compute_dtype == torch.bfloat16  # computeDtype auto = the precision
    assert quantization_config(nf4, "fp32").bnb_4bit_compute_dtype == torch.float32

    fp4 = make_job(
        tmp_path,
        quantization={"mode": "4bit", "quantType": "fp4", "doubleQuant": False,
                      "computeDtype": "fp32", "quantStorageDtype": "bf16"},
    ).spec  # fmt: skip
    q = quantization_config(fp4, "bf16")
    assert (q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == ("fp4", False)
    assert q.bnb_4bit_compute_dtype == torch.float32  # the spec's, not the precision
    assert q.bnb_4bit_quant_storage == torch.bfloat16

    q8 = quantization_config(make_job(tmp_path, quantization={"mode": "8bit"}).spec, "bf16")
    assert q8.load_in_8bit and not q8.load_in_4bit
    assert quantization_config(make_job(tmp_path).spec, "bf16") is None


def test_training_spec_reaches_the_training_arguments(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        training={"maxSteps": 40, "microBatchSize": 2, "gradientAccumulation": 4,
                  "learningRate": 1e-3, "scheduler": "cosine", "warmupSteps": 3,
                  "weightDecay": 0.01, "maxGradNorm": 0.5, "seed": 11, "evalSteps": 6,
                  "saveSteps": 4, "loggingSteps": 2},
    )  # fmt: skip
    kw = training_kwargs(job, tmp_path / "staging", "fp32", False, True)
    assert {k: kw[k] for k in (
        "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm",
        "seed", "data_seed", "eval_strategy", "eval_steps", "save_strategy", "save_steps",
        "logging_steps", "metric_for_best_model", "greater_is_better", "bf16", "use_cpu",
    )} == {
        "max_steps": 40, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
        "learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 3,
        "weight_decay": 0.01, "max_grad_norm": 0.5, "seed": 11, "data_seed": 11,
        "eval_strategy": "steps", "eval_steps": 6, "save_strategy": "steps", "save_steps": 4,
        "logging_steps": 2, "metric_for_best_model": "eval_loss", "greater_is_better": False,
        "bf16": False, "use_cpu": True,
    }  # fmt: skip
    assert "load_best_model_at_end" not in kw  # that comes with early stopping only
    args = TrainingArguments(**kw)  # the real class takes every keyword
    assert (args.gradient_accumulation_steps, args.max_grad_norm, args.seed) == (4, 0.5, 11)
    assert str(args.lr_scheduler_type.value) == "cosine" and args.warmup_steps == 3

    # Without validation: no evaluation, no best to track; epochs and a warmup share.
    ratio = make_job(tmp_path, training={"maxSteps": None, "epochs": 3, "warmupRatio": 0.1})
    kw = training_kwargs(ratio, tmp_path / "staging", "bf16", False, False)
    assert (kw["max_steps"], kw["num_train_epochs"], kw["warmup_steps"]) == (-1, 3, 0.1)
    assert kw["eval_strategy"] == "no" and kw["save_strategy"] == "epoch" and kw["bf16"]
    assert "metric_for_best_model" not in kw

    es = make_job(
        tmp_path,
        training={"evalSteps": 2, "earlyStopping": {"patience": 2}},
    )
    kw = training_kwargs(es, tmp_path / "staging", "fp32", False, True)
    assert kw["load_best_model_at_end"] and kw["save_steps"] == 2  # saves where it evaluates
    with pytest.raises(ConfigError, match="earlyStopping needs validation data"):
        training_kwargs(es, tmp_path / "staging", "fp32", False, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path and its warning")
def test_memory_above_80_percent_turns_gradient_checkpointing_on_and_says_so(
    tmp_path: Path,
) -> None:
    job = make_job(tmp_path, training={"maxSteps": 2})
    prep = prepared()
    here = hardware.system_report()
    precision = resolve_precision(job.spec, here)
    base = loader.resolve_base(job.spec, training_texts(prep))
    config = AutoConfig.from_pretrained(base.location)
    off = preflight.estimate(job.spec, config, precision, 1, "cpu", False).total
    on = preflight.estimate(job.spec, config, precision, 1, "cpu", True).total
    assert on < off
    # A machine where the estimate without checkpointing is 90% of the memory available.
    tight = dataclasses.replace(here, memory_available_bytes=int(off / 0.9))

    said: list[str] = []
    roomy = load_all(job, prep, said.append, system=here)
    assert not roomy.memory.gradient_checkpointing
    assert not roomy.model.get_base_model().is_gradient_checkpointing
    assert not any("gradient checkpointing turned on" in s for s in said)
    assert "warning: no GPU found, training on the CPU (fine for small models, slow for " \
           "large ones)" in said  # fmt: skip

    said.clear()
    loaded = load_all(job, prep, said.append, system=tight)
    assert (
        "memory estimate above 80% of available: gradient checkpointing turned on "
        "(training.gradientCheckpointing: auto)"
    ) in said
    assert any(
        s.startswith("memory preflight: ") and "(gradient checkpointing on)" in s for s in said
    )
    assert loaded.memory.gradient_checkpointing
    assert loaded.model.get_base_model().is_gradient_checkpointing
    code, res = execute(job, prepared=prep, loaded=loaded, say=said.append)
    assert code == 0 and res is not None and res.steps == 2
    assert res.report["hyperparameters"]["gradient_checkpointing"] is True
    assert loaded.model.get_base_model().is_gradient_checkpointing  # trained that way
