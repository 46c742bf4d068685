"""Quantize a checkpoint to 4-bit tensor by tensor, straight into the quantized-base cache.

from_pretrained(quantization_config=...) on a CPU reads the whole full-precision checkpoint
through memory maps whose pages stay resident until loading ends: a cold 4-bit load of a
1.1B model peaked at ~6.3 GB for 0.6 GB of weights. Here the model is built on the meta
device only to learn which Linear layers bitsandbytes replaces (transformers' own
replace_with_bnb_linear, so the same layers as the in-memory path), then each checkpoint
tensor is read with plain file reads (no memory map), quantized with the same Params4bit
call transformers makes, written out in small safetensors shards and freed. The folder is
what save_pretrained of a quantized model writes (config.json with the quantization
config, bitsandbytes' serialized 4-bit state), so the ordinary warm load reads it: at most
one full-precision tensor and one output shard are alive at a time.

Only what this path can reproduce exactly is streamed: 4-bit, causal LM, safetensors
checkpoints whose tensor names are the model's own (no renaming or fusing on load).
Everything else returns False and takes from_pretrained's in-memory path.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# safetensors dtype names (the format's header) -> torch
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
SHARD_BYTES = 64 * 2**20  # output shard size: bounds what is held before it is written


def checkpoint_files(folder: Path) -> list[Path] | None:
    """The safetensors files of a checkpoint folder, or None when it has none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else None


def _header(path: Path) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    head.pop("__metadata__", None)
    return head, 8 + n


def tensor_names(files: list[Path]) -> list[str]:
    return [name for path in files for name in _header(path)[0]]


def read_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) one at a time, each in memory of its own, in file order.

    Plain reads instead of safetensors' memory map: a mapped page that was read counts in
    the process's RSS until the map is closed, i.e. the whole checkpoint by the end. The
    page cache is told to drop what was read (it counts against a pod's memory limit).
    """
    for path in files:
        head, base = _header(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            for name, info in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                start, end = info["data_offsets"]
                buf = bytearray(end - start)
                view, got = memoryview(buf), 0
                while got < len(buf):
                    n = os.preadv(fd, [view[got:]], base + start + got)
                    if n == 0:
                        raise OSError(f"{path}: truncated at tensor {name}")
                    got += n
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fd, base + start, end - start, os.POSIX_FADV_DONTNEED)
                dtype = _DTYPES[info["dtype"]]
                t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
                yield name, t.reshape(info["shape"])
        finally:
            os.close(fd)


def meta_model(location: str, qconf: Any, trust_remote_code: bool) -> Any:
    """The model on the meta device, Linear4bit wherever from_pretrained would put one."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.quantizers.base import HfQuantizer

    config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    skip = HfQuantizer.get_modules_to_not_convert(
        model, qconf.llm_int8_skip_modules, model._keep_in_fp32_modules
    )
    return replace_with_bnb_linear(
        model, modules_to_not_convert=skip, quantization_config=qconf, pre_quantized=False
    )


def supported(location: str, qconf: Any, task: str) -> bool:
    folder = Path(location)
    return (
        qconf is not None
        and getattr(qconf, "load_in_4bit", False)
        and task == "causal_lm"
        and folder.is_dir()
        and checkpoint_files(folder) is not None
    )


def quantize_to(
    dest: Path,
    location: str,
    qconf: Any,
    dtype: torch.dtype,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> bool:
    """Write the 4-bit copy of checkpoint `location` into `dest`; False when it cannot.

    device: where bitsandbytes quantizes ("cpu", or "cuda:N" on a GPU host; the result is
    moved back to the CPU to be written).
    """
    import bitsandbytes as bnb
    from safetensors.torch import save_file

    folder = Path(location)
    files = checkpoint_files(folder)
    if files is None:
        return False
    model = meta_model(location, qconf, trust_remote_code)
    state = model.state_dict(keep_vars=True)
    names = tensor_names(files)
    missing = set(state) - set(names)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    # Names the model does not have (renamed/fused on load) or lacks: leave it to transformers.
    if set(names) - set(state) or missing - tied:
        return False
    fp32_keep = tuple(model._keep_in_fp32_modules or ())
    modules = dict(model.named_modules())
    shard: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    held = 0

    def flush() -> None:
        nonlocal shard, held
        if shard:
            fname = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, str(dest / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
        shard, held = {}, 0

    for name, value in read_tensors(files):
        module_name, _, leaf = name.rpartition(".")
        module = modules.get(module_name)
        if isinstance(module, bnb.nn.Linear4bit) and leaf == "weight":
            meta = state[name]
            # The call transformers' Bnb4bitQuantize makes, so the bytes are the same.
            q = bnb.nn.Params4bit(value.to(dtype), requires_grad=False, **meta.__dict__).to(device)
            out = {name: q.data.cpu()}
            for k, v in q.quant_state.as_dict(packed=True).items():
                out[f"{name}.{k}"] = v.detach().cpu().clone()  # codebooks are shared tensors
            del q
        else:
            keep = any(module_name == m or module_name.startswith(f"{m}.") for m in fp32_keep)
            cast = value.is_floating_point() and not keep
            out = {name: value.to(dtype) if cast else value}
        del value
        for k, v in out.items():
            shard[k] = v.contiguous()
            held += v.numel() * v.element_size()
        if held >= SHARD_BYTES:
            flush()
    flush()
    index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    config = model.config
    config.quantization_config = qconf
    config.dtype = dtype
    config.save_pretrained(dest)
    if (folder / "generation_config.json").is_file():
        shutil.copy(folder / "generation_config.json", dest / "generation_config.json")
    trim_heap()
    return True


def trim_heap() -> None:
    """Hand the freed full-precision tensors' heap back to the OS before the warm read.

    glibc keeps freed blocks below its mmap threshold in the heap: after streaming the 1.1B
    model the process held ~430 MiB it no longer used (RSS 885 -> 454 MiB after a trim).
    """
    # Not glibc (musl, macOS): no libc.so.6 or no malloc_trim, nothing to give back.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
