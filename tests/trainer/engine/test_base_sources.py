"""Base models from where users keep them: an s3:// prefix (a real moto server) and a folder
holding a GGUF file (written by kubetune's own exporter). Each trains for real."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from kubetune_api.constants import ExitCode
from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.run import run_job
from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.export.gguf_export import write_gguf
from kubetune_trainer.export.merge import merge_adapter
from kubetune_trainer.modeling import loader
from tests.support.builders import prepared, train_losses
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server
from tests.support.trainer.base_sources import (
    first_last,
    job,
    s3_keys,
    sha256,
    tensor_names,
    tiny_llama_copy,
    upload_folder,
)

TEXT = "What color is the lamp? It is gold. The lamp is gold."


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.services
def test_base_from_an_s3_prefix_trains(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tiny_llama_copy(tmp_path / "tiny")  # built in the session cache, then copied
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))  # this test's fetches only
    # Only the spec names the endpoint (as for MinIO in a cluster): nothing from the env.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3 = s3_server.client()
    sent = upload_folder(s3, src, S3_BUCKET, "models/tiny-llama")
    base = f"s3://{S3_BUCKET}/models/tiny-llama"
    spec = {"uri": f"s3://{S3_BUCKET}/runs", "s3Endpoint": s3_server.endpoint}
    said: list[str] = []
    res = run_job(
        job(spec, name="from-s3", model={"base": base}, training={"maxSteps": 12}),
        prepared=prepared(),
        say=said.append,
    )

    assert res.steps == 12
    assert res.tuned_eval_loss < res.base_eval_loss - 0.1, (res.base_eval_loss,
                                                            res.tuned_eval_loss)  # fmt: skip
    run = "runs/test/from-s3"
    rows = s3.get_object(Bucket=S3_BUCKET, Key=f"{run}/report/metrics.jsonl")["Body"].read()
    losses = {r["step"]: r["loss"] for r in map(json.loads, rows.splitlines()) if "loss" in r}
    assert sorted(losses) == list(range(1, 13))
    first, last = first_last(losses)
    assert last < first - 0.1, (first, last)
    # The model came from the bucket: the fetched folder is, file for file, what was sent.
    (fetched,) = (tmp_path / "cache" / "s3").iterdir()
    assert {f.name: sha256(f) for f in fetched.iterdir()} == sent
    assert any(s.startswith(f"model: {base} (LlamaForCausalLM)") for s in said), said
    # The adapter went to the same store, and it holds only LoRA tensors.
    assert res.adapter.uri == f"s3://{S3_BUCKET}/{run}/adapter"
    adapter = tmp_path / "adapter.safetensors"
    s3.download_file(S3_BUCKET, f"{run}/adapter/adapter_model.safetensors", str(adapter))
    assert hashlib.sha256(adapter.read_bytes()).hexdigest() == res.adapter.sha256
    names = tensor_names(adapter)
    assert names and all("lora_" in n for n in names), names
    cfg = s3.get_object(Bucket=S3_BUCKET, Key=f"{run}/adapter/adapter_config.json")["Body"]
    # It names the bucket, not this machine's fetch cache, so it works elsewhere too.
    assert json.loads(cfg.read())["base_model_name_or_path"] == base
    card = s3.get_object(Bucket=S3_BUCKET, Key=f"{run}/adapter/README.md")["Body"].read()
    assert card.decode().startswith(f"---\nbase_model: {base}\n")
    assert res.report["base_model"] == base
    # Export on the adapter in S3 finds the base through that record (no job file needed).
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    merged = merge_adapter(res.adapter.uri, tmp_path / "merged")
    assert merged.base == base and (tmp_path / "merged" / "model.safetensors").is_file()
    # model.tokenizer may live on S3 too: fetched beside the base, loaded from the copy.
    tok_files = {f.name for f in src.iterdir() if f.name.startswith(("tokenizer", "special"))}
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    for name in tok_files:
        (tok_dir / name).write_bytes((src / name).read_bytes())
    upload_folder(s3, tok_dir, S3_BUCKET, "models/tok")
    spec2 = job(spec, name="tok", model={"base": base, "tokenizer": f"s3://{S3_BUCKET}/models/tok"})
    resolved = loader.resolve_base(spec2.spec)
    assert {f.name for f in Path(resolved.tokenizer_location).iterdir()} == tok_files
    assert loader.load_tokenizer(spec2.spec, resolved)(TEXT).input_ids


@pytest.mark.services
def test_a_missing_s3_base_fails_before_training(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3 = s3_server.client()
    s3.put_object(Bucket=S3_BUCKET, Key="models/other/config.json", Body=b"{}")
    output = {"uri": f"s3://{S3_BUCKET}/runs", "s3Endpoint": s3_server.endpoint}
    cases = {
        f"s3://{S3_BUCKET}/models/absent": "nothing found at",  # bucket there, prefix not
        "s3://no-such-bucket/models/tiny-llama": "does not exist",
    }
    for uri, why in cases.items():
        said: list[str] = []
        code, res = execute(job(output, name="missing", model={"base": uri}), prepared=prepared(),
                            say=said.append)  # fmt: skip
        assert (code, res) == (ExitCode.INVALID_SPEC, None)
        summary = json.loads((tmp_path / "termination-log").read_text())
        assert summary["phase"] == "setup" and "step" not in summary, summary
        assert uri in summary["message"] and why in summary["message"], summary
        assert not any(s.startswith("model:") for s in said)  # no model was ever loaded
    # Nothing was written for the run (the writability probe removed itself).
    assert s3_keys(s3, S3_BUCKET, "runs/") == []


def test_base_from_a_user_gguf_folder_trains_and_is_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_llama_copy(tmp_path / "tiny")
    user = tmp_path / "my-models"  # what a user has: one .gguf among other files
    gguf = Path(write_gguf(src, user / "tiny-llama-f16.gguf", "f16").path)
    (user / "README.md").write_text("tiny llama, exported to GGUF\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("KUBETUNE_CACHE", str(cache))  # this test's conversions only
    spec = {"base": str(user), "ggufFile": gguf.name}

    with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.gguf"):
        res = run_job(
            job({"uri": str(tmp_path / "runs")}, name="from-gguf", model=spec,
                training={"maxSteps": 12}),
            prepared=prepared(), say=lambda s: None,
        )  # fmt: skip
    assert f"converting GGUF {gguf.name}" in caplog.text
    assert res.steps == 12
    first, last = first_last(train_losses(Path(res.run_uri)))
    assert last < first - 0.1, (first, last)
    assert res.tuned_eval_loss < res.base_eval_loss - 0.1
    names = tensor_names(Path(res.adapter.uri) / "adapter_model.safetensors")
    assert names and all("lora_" in n for n in names), names

    # One cache entry, keyed by the file's sha256, complete, with no temp folder left.
    (entry,) = (cache / "gguf").iterdir()
    assert entry.name == sha256(gguf)[:32]
    assert (entry / ".complete").is_file() and (entry / "model.safetensors").is_file()
    stamp = {f.name: f.stat().st_mtime_ns for f in entry.iterdir()}

    # A second load reads that entry: no conversion, not one file rewritten.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.gguf"):
        again = job({"uri": str(tmp_path / "runs")}, name="again", model=spec).spec
        base = loader.resolve_base(again, training_texts(prepared()))
        model = loader.load_base_model(again, base, "fp32")
    assert "converting GGUF" not in caplog.text
    assert Path(base.location) == entry and list((cache / "gguf").iterdir()) == [entry]
    assert {f.name: f.stat().st_mtime_ns for f in entry.iterdir()} == stamp

    # The right weights: the same logits as the model that was exported (f16 rounding).
    original = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(str(src))(TEXT).input_ids
    assert loader.load_tokenizer(again, base)(TEXT).input_ids == ids
    want, got = _logits(original, ids), _logits(model, ids)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
    # ...a bound that means something: another init of this config is far outside it.
    torch.manual_seed(0)
    other = AutoModelForCausalLM.from_config(original.config, dtype=torch.float32)
    assert (_logits(other, ids) - want).abs().max() > 50 * 1e-3
