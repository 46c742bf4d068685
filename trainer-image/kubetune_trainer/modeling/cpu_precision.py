"""Does bf16 autocast pay on this CPU? Measured once per CPU model, then remembered.

`precision: auto` on a CPU trains in bf16 only when a training-shaped step (a 1024-token
Linear forward and backward under autocast) takes at most BF16_MAX_RATIO of the fp32 time.
CPU flags alone mislead: on 2-core Xeons with avx512_bf16 but no AMX, bf16 LoRA steps ran
at 0.62x of fp32 (bench/findings.md); on AMX hosts this probe measured bf16 at 0.3-0.7x of
the fp32 time (2026-12-06, loaded). A bf16 verdict also stores the frozen base in bf16
(frozen16), so generation outside the Trainer's autocast runs its matmuls in bf16 too.

The verdict is cached in <cache>/cpu-precision.json under the CPU model, thread count and
torch version, so every attempt of a job on one kind of machine resolves the same precision
(a fresh timing under a loaded machine could flip it between attempts).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .cache import cache_root

CACHE_FILE = "cpu-precision.json"
BF16_MAX_RATIO = 0.8  # bf16 must save at least 20%: the casts and the risk are not free
TOKENS, IN, OUT = 1024, 576, 1536  # a small model's MLP projection, one micro batch
REPEATS = 20  # ~0.5 s on an idle 2-core CPU; the minimum needs enough rounds under load


def _time_step(layer: Any, x: Any, bf16: bool) -> float:
    import torch

    x.grad = layer.weight.grad = None
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.float().sum().backward()
    return time.perf_counter() - start


def measure() -> dict[str, float]:
    """Best-of-REPEATS seconds of one fp32 and one bf16-autocast training-shaped step,
    interleaved so a busy neighbour slows both alike: the minimum is the least disturbed
    run, the machine's own speed. (Medians drift towards 1.0 on a loaded machine, where
    both wait for the same time slices.)"""
    import torch

    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(IN, OUT, bias=False)
    x = torch.randn(TOKENS, IN, generator=gen, requires_grad=True)
    best = {"fp32_s": float("inf"), "bf16_s": float("inf")}
    for i in range(REPEATS + 1):
        for key, bf16 in (("fp32_s", False), ("bf16_s", True)):
            took = _time_step(layer, x, bf16)
            if i:  # the first round warms the kernels up
                best[key] = min(best[key], took)
    return best


def bf16_pays(timing: dict[str, float]) -> bool:
    return timing["bf16_s"] <= BF16_MAX_RATIO * timing["fp32_s"]


def machine_key(cpu_name: str) -> str:
    import torch

    return f"{cpu_name}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def cpu_bf16_fast(cpu_name: str, root: Path | None = None) -> bool:
    """The cached verdict for this machine, measured (and saved) the first time."""
    path = (root or cache_root()) / CACHE_FILE
    key = machine_key(cpu_name)
    try:
        known: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict) and "bf16" in known[key]:
        return bool(known[key]["bf16"])
    timing = measure()
    known[key] = {**{k: round(v, 6) for k, v in timing.items()}, "bf16": bf16_pays(timing)}
    try:  # a read-only cache only costs a new measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        pass
    return bool(known[key]["bf16"])
