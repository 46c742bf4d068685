"""modeling/cpu_4bit: bitsandbytes' CPU 4-bit training matmul dequantizes into a reused
per-thread buffer: the same outputs and input gradients as bitsandbytes' own arithmetic
(bit for bit), no new weight-sized tensor per call, and a 4-bit job on the CPU uses it."""

from __future__ import annotations

import threading
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes import functional as bnbf

from kubetune_trainer.modeling import cpu_4bit, loader
from tests.support.builders import make_job


def _layer(quant_type: str, double: bool, dtype: torch.dtype, shape=(96, 64)) -> torch.nn.Module:
    torch.manual_seed(0)
    lin = bnb.nn.Linear4bit(shape[1], shape[0], bias=True, compute_dtype=dtype,
                            quant_type=quant_type, compress_statistics=double)  # fmt: skip
    lin.weight = bnb.nn.Params4bit(torch.randn(shape) * 0.1, requires_grad=False,
                                   quant_type=quant_type, compress_statistics=double)  # fmt: skip
    lin = lin.to("cpu")  # quantizes
    lin.support_avx512bf16_for_cpu = False  # the training layout (loader.keep_4bit_training_layout)
    return lin


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("double", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_outputs_and_input_gradients_are_bitsandbytes_own(quant_type, double, dtype) -> None:
    assert cpu_4bit.install() and cpu_4bit.install()  # idempotent
    lin = _layer(quant_type, double, dtype)
    x = torch.randn(5, 64, dtype=dtype, requires_grad=True)
    y = lin(x)
    grad_out = torch.randn_like(y)
    for t in (torch.float32, dtype):  # backward must write the weight again, in scratch
        cpu_4bit.scratch((96, 64), t).fill_(float("nan"))
    y.backward(grad_out)
    # bitsandbytes' arithmetic, written out: dequantize the whole weight, then matmul.
    w = bnbf.dequantize_4bit(lin.weight.data, lin.weight.quant_state)
    ref = torch.nn.functional.linear(x.detach(), w.to(dtype), lin.bias.to(dtype))
    ref_grad = torch.matmul(grad_out, w.to(dtype))
    assert torch.equal(y.detach(), ref)
    assert torch.equal(x.grad, ref_grad)
    # The backward went through this thread's buffer (straight in the gradient's dtype).
    assert torch.equal(cpu_4bit.scratch((96, 64), dtype), w.to(dtype))


def test_one_buffer_per_thread_reused_across_layers() -> None:
    big = cpu_4bit.scratch((96, 64), torch.bfloat16)
    small = cpu_4bit.scratch((32, 64), torch.bfloat16)
    assert small.data_ptr() == big.data_ptr()  # no new allocation for a smaller layer
    seen = []
    t = threading.Thread(target=lambda: seen.append(cpu_4bit.scratch((32, 64), torch.bfloat16)))
    t.start()
    t.join()
    assert seen[0].data_ptr() != big.data_ptr()  # a generating thread never shares it


def test_a_4bit_job_on_the_cpu_installs_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cpu_4bit, "_installed", False)
    calls = []
    real = cpu_4bit.install
    monkeypatch.setattr(cpu_4bit, "install", lambda: calls.append(1) or real())
    job = make_job(tmp_path / "out", quantization={"mode": "4bit", "doubleQuant": True})
    base = loader.resolve_base(job.spec, ["hello world"] * 8)
    model = loader.load_base_model(job.spec, base, "fp32")
    assert calls == [1]
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
