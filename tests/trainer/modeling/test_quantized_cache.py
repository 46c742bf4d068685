"""The quantized-base cache: the second 4-bit load reads the copy the first one saved, and
that copy is the same model (same packed weights, same logits)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import loader
from tests.support.builders import make_job, prepared

# Offline, in the session's model cache, with its own termination log (tests/trainer/conftest.py).
pytestmark = pytest.mark.usefixtures("trainer_env")


def _packed(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.data.clone() for n, p in model.named_parameters() if type(p).__name__ == "Params4bit"
    }


def test_second_4bit_load_reads_the_cached_quantized_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))  # this test's cache only
    spec = make_job(tmp_path / "out", quantization={"mode": "4bit", "doubleQuant": True}).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])

    with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.quantized"):
        first = loader.load_base_model(spec, base, "fp32")
    assert "quantized base: saved to" in caplog.text
    (entry,) = (tmp_path / "cache" / "quantized").iterdir()
    assert (entry / ".complete").is_file() and (entry / "config.json").is_file()
    packed, logits = _packed(first), first(input_ids=ids).logits.detach()
    assert packed, "no 4-bit layers were loaded"

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kubetune_trainer.modeling.quantized"):
        second = loader.load_base_model(spec, base, "fp32")
    assert f"reading the cached copy {entry}" in caplog.text
    again = _packed(second)
    assert again.keys() == packed.keys()
    assert all(torch.equal(again[k], packed[k]) for k in packed)
    assert torch.equal(second(input_ids=ids).logits.detach(), logits)

    # Another quantization of the same base is another entry, never the 4-bit copy.
    spec8 = make_job(tmp_path / "out", quantization={"mode": "8bit"}).spec
    loader.load_base_model(spec8, base, "fp32")
    assert len(list((tmp_path / "cache" / "quantized").iterdir())) == 2


def test_a_failed_save_keeps_the_loaded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk while caching must not stop the job: the model in hand is used."""
    from kubetune_trainer.modeling import quantized

    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))

    class DiskFull:
        def save_pretrained(self, folder: Path) -> None:
            (Path(folder) / "model.safetensors").write_bytes(b"partial")
            raise OSError(28, "No space left on device")

    model = DiskFull()
    with caplog.at_level(logging.WARNING, logger="kubetune_trainer.modeling.quantized"):
        got = quantized.load_or_quantize("k1", lambda _loc, _q: model, str(tmp_path))
    assert got is model and "not cached" in caplog.text
    assert quantized.cached_path("k1") is None  # no half-written entry is ever used
    assert not list((tmp_path / "cache" / "quantized").glob("*/model.safetensors"))
