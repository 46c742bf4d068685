"""bitsandbytes' 4-bit matmul on the CPU without a fresh full-size weight on every call.

On a CPU, bitsandbytes (0.50) trains a Linear4bit by dequantizing its whole weight into a
new tensor for each matmul: forward, the recomputation under gradient checkpointing and the
backward's input gradient. At TinyLlama-1.1B's shape that is a 23 MiB bf16 tensor (46 MiB in
fp32) allocated and freed ~460 times a step. glibc's malloc raises its mmap threshold to the
size of the first such block freed, so the later ones come from the heap, and the heap keeps
what it grew to: the 4-bit run's peak RSS was ~200 MiB above what it holds (bench/findings.md,
"The 4-bit matmul's dequantized weight").

Here each thread dequantizes into one buffer of its own, kept for the process and reused by
every layer, with the same bitsandbytes kernel: the same values, so the same losses and
gradients. Only the CPU is changed (bitsandbytes' GPU kernels dequantize inside the matmul);
anything this does not cover (fp4/nf4 into another dtype, odd shapes, bitsandbytes without
these kernels) goes through bitsandbytes' own path.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from math import prod
from typing import Any

import torch

log = logging.getLogger(__name__)

_local = threading.local()
_installed = False
_library: Any = None  # the torch.library registration (kept alive: dropping it unregisters)


def _kernel(quant_type: str, dtype: torch.dtype) -> Any:
    """bitsandbytes' CPU dequantization kernel for (nf4|fp4, bf16|fp32|fp16), or None."""
    try:
        from bitsandbytes.cextension import lib
    except ImportError:
        return None
    suffix = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}.get(dtype)
    if suffix is None or quant_type not in ("nf4", "fp4"):
        return None
    return getattr(lib, f"cdequantize_blockwise_cpu_{quant_type}_{suffix}", None)


def scratch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """This thread's reusable buffer for `dtype`, viewed as `shape` (grown when needed)."""
    buffers: dict[torch.dtype, torch.Tensor] = _local.__dict__.setdefault("buffers", {})
    n = prod(shape)
    buf = buffers.get(dtype)
    if buf is None or buf.numel() < n:
        buffers[dtype] = buf = torch.empty(n, dtype=dtype)
    return buf[:n].view(shape)


def dequantize(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    shape: Any,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The 4-bit weight in `dtype`, in this thread's buffer when the CPU kernel applies (valid
    until the next call on this thread), else bitsandbytes' own (a new tensor)."""
    shape = tuple(int(s) for s in shape)
    fn = _kernel(quant_type, dtype)
    # bitsandbytes' own fallbacks: odd rows, and its AVX512 path's blocksize limit.
    if fn is None or len(shape) != 2 or shape[-1] % 2 or blocksize >= 2048:
        return torch.ops.bitsandbytes.dequantize_4bit.default(
            packed, absmax, blocksize, quant_type, list(shape), dtype
        )
    packed = packed.contiguous().view(torch.uint8)
    absmax = absmax.float().contiguous()
    out = scratch(shape, dtype)
    m, n = shape
    fn(
        ctypes.c_void_p(packed.data_ptr()), ctypes.c_void_p(absmax.data_ptr()),
        ctypes.c_void_p(out.data_ptr()), ctypes.c_longlong(blocksize),
        ctypes.c_longlong(m), ctypes.c_longlong(n),
    )  # fmt: skip
    return out


# Weight dtype -> gradient dtype whose kernel output equals dequantize-then-cast.
_DIRECT = {torch.float32: torch.bfloat16}


def _absmax(state: Any) -> torch.Tensor:
    """A QuantState's per-block scales (double quantization: dequantized first)."""
    if not state.nested:
        return state.absmax  # type: ignore[no-any-return]
    from bitsandbytes import functional as bnbf

    return bnbf.dequantize_blockwise(state.absmax, state.state2) + state.offset  # type: ignore[no-any-return]


def _gemm(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Any,
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """bitsandbytes::gemm_4bit on the CPU (its default kernel, with the weight in scratch)."""
    if absmax_8bit is not None:  # nested: per-block scale = code[absmax_8bit] * absmax + offset
        absmax = (
            torch.ops.bitsandbytes.dequantize_blockwise.default(
                absmax_8bit, absmax, absmax_code, 256, torch.float32
            )
            + absmax_offset
        )
    weight = dequantize(B, absmax, blocksize, quant_type, shapeB, A.dtype)
    return torch.nn.functional.linear(A, weight, bias)


def install() -> bool:
    """Route bitsandbytes' CPU 4-bit training matmul (forward and backward) through the
    scratch buffers; idempotent. False when this bitsandbytes does not look like the one it
    was written for (then it is left as it is)."""
    global _installed, _library
    if _installed:
        return True
    try:
        from bitsandbytes.autograd import _functions as fns
    except ImportError:
        return False
    matmul = getattr(fns, "MatMul4Bit", None)
    if matmul is None or _kernel("nf4", torch.bfloat16) is None:
        log.info("bitsandbytes' CPU 4-bit kernels not found: its own matmul path is kept")
        return False
    own_backward = matmul.backward

    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        if ctx.is_empty or grad_output.device.type != "cpu":
            return own_backward(ctx, grad_output)
        need_a, _, _, need_bias, _ = ctx.needs_input_grad
        _, packed = ctx.tensors
        grad_bias = grad_output.sum(0, dtype=ctx.dtype_bias) if need_bias else None
        grad_a = None
        if need_a:
            st = ctx.state
            # bitsandbytes dequantizes in the weight's dtype, then casts to the gradient's.
            # From fp32, the kernel's bf16 output is that cast, bit for bit (tested): no
            # second weight-sized tensor.
            dtype = grad_output.dtype if _DIRECT.get(st.dtype) == grad_output.dtype else st.dtype
            weight = dequantize(packed, _absmax(st), st.blocksize, st.quant_type, st.shape, dtype)
            grad_a = torch.matmul(grad_output, weight.to(grad_output.dtype))
        return grad_a, None, None, grad_bias, None

    _library = torch.library.Library("bitsandbytes", "IMPL")
    _library.impl("gemm_4bit", _gemm, "CPU")
    matmul.backward = staticmethod(backward)
    _installed = True
    return True
