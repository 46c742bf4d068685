"""The Unsloth engine: the spec maps onto Unsloth's parameters; preflight refuses clearly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune_api.loader import parse_job
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.unsloth_backend import load_kwargs, peft_kwargs, preflight

DOC: dict[str, Any] = {
    "metadata": {"name": "med"},
    "spec": {
        "model": {"base": "meta-llama/Meta-Llama-3-8B-Instruct", "revision": "v1"},
        "adapter": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["q_proj", "o_proj"]},
        "quantization": {"mode": "4bit"},
        "dataset": {"source": "d.jsonl", "format": "qa", "maxSeqLength": 2048},
        "training": {"engine": "unsloth", "seed": 7, "precision": "bf16"},
    },
}


def job(**changes: Any) -> Any:
    doc = copy.deepcopy(DOC)
    for section, values in changes.items():
        doc["spec"].setdefault(section, {}).update(values)
    return parse_job(doc)


def test_spec_maps_onto_unsloth_parameters() -> None:
    j = job()
    assert load_kwargs(j) == {
        "model_name": "meta-llama/Meta-Llama-3-8B-Instruct",
        "max_seq_length": 2048,
        "dtype": "bfloat16",
        "load_in_4bit": True,
        "load_in_8bit": False,
        "full_finetuning": False,
        "trust_remote_code": False,
        "revision": "v1",
    }
    peft = peft_kwargs(j)
    assert peft["r"] == 8 and peft["lora_alpha"] == 16 and peft["random_state"] == 7
    assert peft["target_modules"] == ["q_proj", "o_proj"]
    assert peft["use_gradient_checkpointing"] == "unsloth"
    assert peft["modules_to_save"] is None


def test_the_resolved_base_and_tokenizer_are_what_unsloth_loads() -> None:
    # An s3:// tokenizer is a local copy once loader.resolve_base fetched it.
    j = job(model={"tokenizer": "s3://models/llama3-tokenizer"})
    kwargs = load_kwargs(j, "/cache/s3/base", "/cache/s3/tokenizer")
    assert kwargs["model_name"] == "/cache/s3/base"
    assert kwargs["tokenizer_name"] == "/cache/s3/tokenizer"
    # No tokenizer of its own: the base's, so Unsloth is not told one.
    assert "tokenizer_name" not in load_kwargs(job(), "/cache/base", "/cache/base")


def test_auto_precision_and_checkpointing_off() -> None:
    j = job(training={"precision": "auto", "gradientCheckpointing": "off"})
    assert load_kwargs(j)["dtype"] is None
    assert peft_kwargs(j)["use_gradient_checkpointing"] is False


def test_preflight_refuses_without_gpu_naming_option_and_fallback() -> None:
    with pytest.raises(ConfigError) as info:
        preflight(job(), cuda_available=False, importable=False)
    msg = str(info.value)
    assert msg.startswith("spec.training.engine: unsloth cannot run here")
    assert "CUDA GPU" in msg and "pip install unsloth" in msg
    assert "engine: huggingface" in msg
    assert info.value.exit_code == 64


def test_preflight_refuses_fp4_even_on_a_gpu() -> None:
    j = job(quantization={"quantType": "fp4"})
    with pytest.raises(ConfigError, match="NF4 only"):
        preflight(j, cuda_available=True, importable=True)


def test_preflight_passes_when_runnable_and_ignores_default_engine() -> None:
    preflight(job(), cuda_available=True, importable=True)
    preflight(job(training={"engine": "huggingface"}), cuda_available=False, importable=False)


def test_kubetune_run_refuses_unsloth_on_this_cpu(tmp_path: Any) -> None:
    """Through the real CLI: exit 64 with the option and the fallback, before any loading."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    doc = copy.deepcopy(DOC)
    doc["spec"]["model"] = {"base": "builtin:tiny-llama"}
    doc["spec"]["quantization"] = {"mode": "4bit"}
    doc["spec"]["dataset"] = {
        "source": str(root / "examples/data/finance_qa/train.jsonl"),
        "format": "finance_qa",
    }
    doc["spec"]["output"] = {"uri": str(tmp_path / "runs")}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "run", str(job_file)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 64, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "spec.training.engine: unsloth cannot run here" in out
    assert "engine: huggingface" in out
    assert "Traceback" not in out
    assert not list((tmp_path / "runs").rglob("adapter_model.safetensors"))
