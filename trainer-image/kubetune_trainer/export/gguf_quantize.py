"""4-bit GGUF types through llama.cpp's own quantizer (llama-cpp-python's binding).

llama.cpp picks per-tensor types itself: q4_k_m keeps some tensors at q6_k, and a
tensor whose rows do not fit the k-quant super-block (256 values) falls back to a
legacy type (q4_0/q5_0/q8_0). The input is an f16 GGUF written by gguf_export.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from kubetune_trainer.errors import ConfigError

# Our type name -> llama.cpp's ftype constant name.
LLAMA_CPP_TYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


def require_llama_cpp(outtype: str) -> Any:
    """The llama_cpp module, or ConfigError saying what to install (checked before any work)."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(
            f"GGUF type {outtype}: needs llama.cpp's quantizer from the llama-cpp-python "
            "package (pip install llama-cpp-python), or use f16/q8_0"
        ) from None
    return llama_cpp


def quantize(src: str | Path, out: str | Path, outtype: str) -> None:
    """llama_model_quantize(src -> out, outtype) with llama.cpp's own code."""
    llama_cpp = require_llama_cpp(outtype)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_CPP_TYPES[outtype])
    params.nthread = max(1, min(4, os.cpu_count() or 1))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not Path(out).is_file():
        raise ConfigError(f"llama.cpp could not quantize {src} to {outtype} (return code {rc})")
