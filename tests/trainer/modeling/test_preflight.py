"""Start-up refusals: memory preflight and hardware checks, before any weight is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import LlamaConfig

from kubetune_api.constants import ExitCode
from kubetune_trainer.engine.main import execute
from kubetune_trainer.errors import OutOfMemoryError
from kubetune_trainer.modeling.preflight import GIB, estimate, preflight
from tests.support.builders import make_job, prepared

# Offline, in the session's model cache, with its own termination log (tests/trainer/conftest.py).
pytestmark = pytest.mark.usefixtures("trainer_env")

LLAMA_70B = LlamaConfig(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=32000,
)


def test_70b_is_refused_with_its_numbers(tmp_path: Path) -> None:
    job = make_job(tmp_path, dataset={"maxSeqLength": 2048}, training={"microBatchSize": 4})
    with pytest.raises(OutOfMemoryError) as err:
        preflight(job.spec, LLAMA_70B, "bf16", 24 * GIB, "cpu")
    msg = str(err.value)
    assert "weights 128.48 GiB (68976.6M params)" in msg  # bf16-stored frozen weights (frozen16)
    assert "of 24.00 GiB available" in msg
    # auto already turned checkpointing on: it is shown, and 4-bit is the next lever
    assert "(gradient checkpointing on)" in msg and "quantization.mode: 4bit" in msg
    assert "microBatchSize" in msg and "maxSeqLength" in msg
    assert err.value.exit_code == ExitCode.OOM == 66


def test_estimate_orders_quantization_and_checkpointing(tmp_path: Path) -> None:
    job = make_job(tmp_path, dataset={"maxSeqLength": 2048})
    full = estimate(job.spec, LLAMA_70B, "fp32", 10**15, "cpu", False)
    assert 68e9 < full.params_total < 70e9
    assert full.weights == full.params_total * 4
    q4 = estimate(
        make_job(tmp_path, quantization={"mode": "4bit"}).spec,
        LLAMA_70B,
        "fp32",
        10**15,
        "cpu",
        False,
    )
    assert q4.weights < full.weights / 6
    gc = estimate(job.spec, LLAMA_70B, "fp32", 10**15, "cpu", True)
    assert gc.activations < full.activations / 4


def test_auto_checkpointing_turns_on_above_80_percent(tmp_path: Path) -> None:
    job = make_job(tmp_path, dataset={"maxSeqLength": 4096}, training={"microBatchSize": 8})
    small = LlamaConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=1000,
    )
    off = estimate(job.spec, small, "fp32", 10**15, "cpu", False)
    on = estimate(job.spec, small, "fp32", 10**15, "cpu", True)
    between = int((on.total + off.total) / 2 / 0.9)  # off > 80% of it, on fits
    est = preflight(job.spec, small, "fp32", between, "cpu")
    assert est.gradient_checkpointing and "turned on" in est.notes[0]


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"precision": "fp16"}, "spec.training.precision"),
        ({"optimizer": "paged_adamw_8bit"}, "spec.training.optimizer"),
    ],
)
def test_gpu_only_settings_refused_on_cpu(tmp_path: Path, training: dict, field: str) -> None:
    job = make_job(tmp_path, training=training)
    code, res = execute(job, prepared=prepared(), say=lambda s: None)
    assert code == ExitCode.INVALID_SPEC == 64 and res is None
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == 64 and field in summary["message"]
    assert summary["phase"] == "setup"
    assert not (tmp_path / "test" / "t" / "checkpoints").exists()


def test_bad_data_exits_65_before_loading_a_model(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "ok?", "answer": "yes"}\n{"question": "no answer"}\nnot json\n')
    job = make_job(tmp_path, dataset={"source": str(data)})
    code, res = execute(job, say=lambda s: None)
    assert code == ExitCode.BAD_DATA == 65 and res is None
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == 65 and "bad.jsonl:2" in summary["message"]
    out = tmp_path / "test"
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing written to the output
