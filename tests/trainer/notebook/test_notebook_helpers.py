"""The notebook helpers' own logic, without a kernel: parameters -> spec, texts, live view."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.loader import parse_job
from kubetune_trainer.modeling.hardware import SystemReport
from kubetune_trainer.notebook import environment_text, quantization_for, quantization_spec
from kubetune_trainer.notebook.live import LiveProgress, MetricsFollower, loss_png
from kubetune_trainer.reporting.prometheus import PrometheusSink
from kubetune_trainer.reporting.sinks import LogRow, RunInfo

GIB = 1024**3


def system(device: str) -> SystemReport:
    return SystemReport(
        device=device,
        device_name="NVIDIA L4" if device == "cuda" else "x86_64",
        device_count=1,
        memory_total_bytes=22 * GIB,
        memory_available_bytes=21 * GIB,
        cpu_count=8,
        bf16_supported=True,
        python="3.11.7",
        versions={"torch": "2.13.0", "peft": "0.21.2"},
    )


def job_with(quantization: dict[str, Any]) -> Any:
    return parse_job(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "q", "namespace": "notebook"},
            "spec": {
                "model": {"base": "builtin:tiny-llama"},
                "quantization": quantization,
                "dataset": {"source": "train.jsonl"},
                "output": {"uri": "runs"},
            },
        }
    )


def test_auto_quantization_is_qlora_on_a_gpu_and_full_weights_on_a_cpu() -> None:
    assert quantization_for("auto", system("cuda")) == "4bit"
    assert quantization_for("auto", system("cpu")) == "none"
    assert quantization_for("8bit", system("cpu")) == "8bit"
    with pytest.raises(ValueError, match="QUANTIZATION must be"):
        quantization_for("int4", system("cuda"))


@pytest.mark.parametrize("mode", ["4bit", "8bit", "none"])
def test_quantization_spec_is_a_valid_spec_for_every_mode(mode: str) -> None:
    q = job_with(quantization_spec(mode)).spec.quantization
    assert q.mode == mode
    if mode == "4bit":
        assert (q.quant_type, q.double_quant) == ("nf4", True)


def test_environment_text_names_the_gpu_and_its_free_memory() -> None:
    gpu = environment_text(system("cuda"))
    assert gpu.startswith("GPU: NVIDIA L4 x1, 21.0 of 22.0 GiB GPU memory free")
    assert "slow" not in gpu and "peft          0.21.2" in gpu
    cpu = environment_text(system("cpu"))
    assert cpu.startswith("No GPU") and "slow" in cpu


def test_follower_reads_the_trainers_metrics_endpoint_into_the_live_view() -> None:
    sink = PrometheusSink(0, addr="127.0.0.1")
    try:
        sink.on_start(RunInfo("notebook", "medical-qa", 1, "runs/notebook/medical-qa"), {})
        sink.on_log(LogRow(step=3, total_steps=10, epoch=0.3, loss=1.25, eta_seconds=42.0))
        progress = LiveProgress()
        follower = MetricsFollower(sink.port, "medical-qa", progress)
        row = follower.scrape()
        assert row == {"step": 3, "total_steps": 10, "epoch": 0.3, "loss": 1.25, "eta_seconds": 42}
        assert MetricsFollower(sink.port, "another-job", progress).scrape() == {}

        seen = threading.Event()
        original = progress.update

        def update(row: dict[str, Any], final: bool = False) -> None:
            original(row, final)
            if row.get("step") == 4:
                seen.set()

        progress.update = update  # type: ignore[method-assign]
        follower.start()
        sink.on_log(LogRow(step=4, total_steps=10, epoch=0.4, loss=1.0, eval_loss=1.1))
        assert seen.wait(30), "the follower never saw step 4"
        follower.stop.set()
        follower.join()
        assert [r["step"] for r in progress.rows][-1] == 4
        assert progress.rows[-1]["eval_loss"] == 1.1
    finally:
        sink.close()


def test_finish_shows_the_last_train_row_with_the_latest_eval_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = LiveProgress()
    progress.finish(
        [
            {"step": 1, "total_steps": 2, "loss": 2.0},
            {"step": 1, "total_steps": 2, "eval_loss": 1.9},
            {"step": 2, "total_steps": 2, "loss": 1.5, "eta_seconds": 0.0},
        ]
    )
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == "step 2/2  loss 1.5000  eval loss 1.9000  ETA 0 s"
    )
    assert len(progress.rows) == 3


def test_live_updates_are_counted_apart_from_the_final_redraw() -> None:
    progress = LiveProgress(plot_every=0)
    assert progress.live_updates == 0
    progress.update({"step": 1, "total_steps": 2, "loss": 2.0})
    progress.update({"step": 2, "total_steps": 2, "loss": 1.5})
    progress.finish([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    assert progress.live_updates == 2  # finish() redraws from metrics.jsonl: not live


def test_loss_png_is_a_png_with_or_without_points() -> None:
    for rows in ([], [{"step": 1, "loss": 2.0}, {"step": 1, "eval_loss": 1.9}]):
        assert loss_png(rows).startswith(b"\x89PNG\r\n\x1a\n")


def test_save_lists_files_with_their_sha256_and_refuses_changed_weights(tmp_path: Path) -> None:
    import hashlib

    from kubetune_trainer.engine.adapter import SavedAdapter
    from kubetune_trainer.engine.run import RunResult
    from kubetune_trainer.notebook import save

    adapter = tmp_path / "notebook" / "medical-qa" / "adapter"
    adapter.mkdir(parents=True)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(bytes(range(256)) * 40)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (adapter / "adapter.json").write_text(json.dumps({"sha256": digest}))
    files = {"adapter_model.safetensors": 10240, "adapter_config.json": 8}
    saved = SavedAdapter(adapter, str(adapter), digest, 10240, files)
    result = RunResult(str(adapter.parent), saved, None, None, None, 1, None, None, {})

    summary = save(result)
    assert summary.weights_ok() and summary.uploaded_to is None
    assert ("adapter_model.safetensors", 10240, digest) in summary.files
    assert ("adapter_config.json", 8, hashlib.sha256(b'{"r": 8}').hexdigest()) in summary.files

    weights.write_bytes(b"\xff" + weights.read_bytes()[1:])  # one byte changed on disk
    with pytest.raises(RuntimeError, match=r"differ from adapter\.json"):
        save(result, s3_uri="s3://never-used/kubetune")


def model_view(job: Any, prepared: Any = None) -> Any:
    from kubetune_trainer.engine.setup import Loaded
    from kubetune_trainer.modeling.loader import BaseModel
    from kubetune_trainer.modeling.preflight import MemoryEstimate
    from kubetune_trainer.notebook import ModelView

    memory = MemoryEstimate(
        params_total=8_030_000_000,
        params_quantizable=6_980_000_000,
        params_lora=6_815_744,
        weights=5 * GIB,
        adapter_and_optimizer=GIB // 10,
        activations=2 * GIB,
        overhead=3 * GIB // 2,
        available=21 * GIB,
        gradient_checkpointing=True,
        notes=["gradient checkpointing turned on"],
    )
    base = BaseModel("/cache/llama", "meta-llama/Meta-Llama-3-8B-Instruct", "/cache/llama", True)
    loaded = Loaded(
        system("cuda"), "bf16", prepared, base, memory, None, None, 6_815_744, 4_547_415_040
    )
    return ModelView(job, loaded, {"4-bit": 224, "8-bit": 0}, ("CUDA allocated", 6 * GIB))


def test_model_view_shows_the_loaded_model_and_the_preflight_against_the_device() -> None:
    view = model_view(job_with(quantization_spec("4bit")))
    lines = view.text().splitlines()
    assert lines[:6] == [
        "base:                    meta-llama/Meta-Llama-3-8B-Instruct",
        "quantization:            4bit (nf4, double quantization on)",
        "quantized Linear layers: 224 4-bit, 0 8-bit (bitsandbytes)",
        "precision:               bf16 on cuda (NVIDIA L4)",
        "trainable parameters:    6,815,744 of 4,547,415,040 (0.150%)",
        "memory in use:           CUDA allocated 6.00 GiB after the load",
    ]
    assert lines[6].startswith("memory preflight: weights 5.00 GiB") and lines[7].startswith(
        "gradient checkpointing"
    )
    page = view.page()
    assert "<td style='text-align:left;vertical-align:top'>8.60</td>" in page  # the total
    assert "41% of available" in page and "free on the cuda" in page


def test_train_refuses_a_model_loaded_for_another_job_or_already_trained() -> None:
    from kubetune_trainer.notebook import DatasetView, check_model_for

    job = job_with(quantization_spec("4bit"))
    prepared = object()
    data = DatasetView(prepared, None, None, ("", ""))  # type: ignore[arg-type]
    view = model_view(job, prepared)
    check_model_for(job, data, view)  # the job and data it was loaded for: fine
    with pytest.raises(ValueError, match="another job or data"):
        check_model_for(job_with(quantization_spec("none")), data, view)
    with pytest.raises(ValueError, match="another job or data"):
        check_model_for(job, DatasetView(object(), None, None, ("", "")), view)  # type: ignore[arg-type]
    view.trained = True
    with pytest.raises(ValueError, match="trained already"):
        check_model_for(job, data, view)


def test_quantized_linear_counts_counts_bitsandbytes_layers_only() -> None:
    import bitsandbytes as bnb
    import torch

    from kubetune_trainer.notebook import quantized_linear_counts

    model = torch.nn.Sequential(bnb.nn.Linear4bit(8, 8), bnb.nn.Linear4bit(8, 8))
    model.append(torch.nn.Linear(8, 8))
    assert quantized_linear_counts(model, "4bit") == {"4-bit": 2, "8-bit": 0}
    assert quantized_linear_counts(model, "none") == {}
