"""A cold 4-bit load quantizes the checkpoint tensor by tensor into the quantized-base cache
(modeling/stream_quant) and reads that copy: the same model as from_pretrained quantizing
in memory (same packed bytes and quantization state for every layer, same logits), in the
format the warm path reads, and it trains. Bases it cannot reproduce exactly take the
in-memory path."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import loader, stream_quant
from tests.support.builders import make_job, prepared, train_losses

pytestmark = pytest.mark.usefixtures("trainer_env")
QLOG = "kubetune_trainer.modeling.quantized"
IDS = torch.tensor([[1, 5, 9, 13, 17, 21]])


def _in_memory(location: str, qconf: object) -> torch.nn.Module:
    """What the cold path did before: from_pretrained quantizing while it loads."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        location, quantization_config=qconf, dtype=torch.float32, device_map={"": "cpu"}
    )


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()  # 4-bit layers: packed weight + quant state
    assert sa.keys() == sb.keys()
    assert any(k.endswith(".weight.absmax") or ".nested_" in k for k in sa)
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []
    assert torch.equal(a(input_ids=IDS).logits, b(input_ids=IDS).logits)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])  # tied; untied; q/k/v bias
def test_cold_4bit_load_streams_the_same_model_as_in_memory_quantization(
    family: str,
    family_base: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = family_base(family)
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    quant = {"mode": "4bit", "doubleQuant": True}
    spec = make_job(tmp_path / "out", model={"base": str(folder)}, quantization=quant).spec
    base = loader.resolve_base(spec)
    with caplog.at_level(logging.INFO, logger=QLOG):
        streamed = loader.load_base_model(spec, base, "fp32")
    assert "layer by layer" in caplog.text
    (entry,) = (tmp_path / "cache" / "quantized").iterdir()
    assert (entry / "model.safetensors.index.json").is_file()
    _assert_same(streamed, _in_memory(str(folder), loader.quantization_config(spec, "fp32")))

    caplog.clear()  # the warm path reads the streamed entry as it is
    with caplog.at_level(logging.INFO, logger=QLOG):
        warm = loader.load_base_model(spec, base, "fp32")
    assert f"reading the cached copy {entry}" in caplog.text
    _assert_same(warm, streamed)


def test_a_streamed_base_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    job = make_job(tmp_path / "out", quantization={"mode": "4bit", "doubleQuant": True})
    with caplog.at_level(logging.INFO, logger=QLOG):
        code, res = execute(job, prepared=prepared(), say=lambda _s: None)
    assert "layer by layer" in caplog.text
    assert code == 0 and res is not None
    losses = train_losses(Path(res.run_uri))
    assert len(losses) >= 2 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert res.tuned_eval_loss < res.base_eval_loss


def test_a_bin_checkpoint_is_quantized_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No safetensors to stream: from_pretrained quantizes, and the result is the same."""
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    spec = make_job(tmp_path / "out", quantization={"mode": "4bit"}).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    folder = Path(base.location)
    as_bin = tmp_path / "bin"
    shutil.copytree(folder, as_bin, ignore=shutil.ignore_patterns("*.safetensors*"))
    torch.save(load_file(str(folder / "model.safetensors")), as_bin / "pytorch_model.bin")
    assert not list(as_bin.glob("*.safetensors"))

    with caplog.at_level(logging.INFO, logger=QLOG):
        got = loader.load_base_model(spec, base, "fp32")  # streamed
        spec_bin = make_job(
            tmp_path / "o2", model={"base": str(as_bin)}, quantization={"mode": "4bit"}
        ).spec
        caplog.clear()
        from_bin = loader.load_base_model(spec_bin, loader.resolve_base(spec_bin), "fp32")
    assert "quantized base: saved to" in caplog.text and "layer by layer" not in caplog.text
    _assert_same(from_bin, got)


def test_read_tensors_reads_every_shard_exactly(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    spec = make_job(tmp_path / "out").spec
    folder = Path(loader.resolve_base(spec, training_texts(prepared())).location)
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(folder).save_pretrained(sharded, max_shard_size="20KB")
    files = stream_quant.checkpoint_files(sharded)
    assert files is not None and len(files) > 1
    want = {k: v for f in files for k, v in load_file(str(f)).items()}
    got = dict(stream_quant.read_tensors(files))
    assert got.keys() == want.keys()
    assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
