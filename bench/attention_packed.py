"""Attention alone over packed rows: the dense block-diagonal mask against one SDPA per example.

    python bench/attention_packed.py [--shape large|small] [--rows 4] [--row 512] [--reps 5]

One attention call, forward and backward, in bf16, on `--rows` rows of `--row` tokens packed
with the workload's lognormal example lengths (workload.Size: median 120, sigma 0.8):
- `dense`: transformers' sdpa attention with the block-diagonal causal mask its masking
  utilities build for position-id packing (with GQA, its repeat_kv expands the kv heads);
- `flash_per_example`: one causal SDPA per example under autograd (the flash kernel's own
  backward; the per-example path before modeling/segment_attention.py);
- `per_example`: modeling/packed_attention.attention (no mask; segment_attention: the flash
  forward per example, its own backward of batched matmuls).
The two alternate, best of `--reps` each. `--shape large` is TinyLlama-1.1B's attention (32
heads, 4 kv heads, head dim 64), `small` the 30M workload model's (8 heads, no GQA). Used to
choose where packed_attention.use switches (findings.md, "Attention over packed rows").
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from contextlib import nullcontext
from typing import Any

from workload import FULL

SHAPES = {"large": (32, 4, 64), "small": (8, 8, 64)}


def packed_positions(rows: int, row: int, seed: int = 0) -> list[list[int]]:
    """Position ids of `rows` rows filled first-fit with the workload's lognormal example
    lengths (workload.Size's median, sigma and minimum)."""
    rnd = random.Random(seed)
    mu, sigma, shortest = math.log(FULL.median_len), FULL.sigma, FULL.min_len
    out = []
    for _ in range(rows):
        pos: list[int] = []
        while len(pos) < row:
            n = max(shortest, min(row, round(rnd.lognormvariate(mu, sigma))))
            pos.extend(range(min(n, row - len(pos))))
        out.append(pos)
    return out


def measure(shape: str, rows: int, row: int, reps: int, math_too: bool = False) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import find_packed_sequence_indices

    from kubetune_trainer.modeling import packed_attention

    heads, kv_heads, dim = SHAPES[shape]
    torch.manual_seed(0)
    position_ids = torch.tensor(packed_positions(rows, row))
    module = torch.nn.Module()
    module.is_causal = True  # type: ignore[assignment]
    module.num_key_value_groups = heads // kv_heads  # type: ignore[assignment]
    module.training = True
    # The block-diagonal causal mask, as transformers builds it for packed rows (bool, True
    # where attention is allowed).
    seq = find_packed_sequence_indices(position_ids)
    same = seq[:, :, None] == seq[:, None, :]
    causal = torch.ones(row, row, dtype=torch.bool).tril()
    dense_mask = (same & causal)[:, None]

    q0 = torch.randn(rows, heads, row, dim, dtype=torch.bfloat16)
    k0 = torch.randn(rows, kv_heads, row, dim, dtype=torch.bfloat16)
    v0 = torch.randn(rows, kv_heads, row, dim, dtype=torch.bfloat16)

    def step(kind: str) -> float:
        q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
        # SDPA's own choice, or its math kernel (the whole score matrix) for comparison.
        chosen = sdpa_kernel([SDPBackend.MATH]) if kind.endswith("math") else nullcontext()
        start = time.perf_counter()
        with chosen:
            if kind.startswith("dense"):
                out, _ = sdpa_attention_forward(module, q, k, v, dense_mask, is_causal=False)
            elif kind == "flash_per_example":
                out = flash_per_example(q, k, v)
            else:
                out, _ = packed_attention.attention(
                    module, q, k, v, None, position_ids=position_ids
                )
            out.float().sum().backward()
        return time.perf_counter() - start

    lengths = packed_attention.segment_lengths(position_ids, rows, row)
    assert lengths is not None

    def flash_per_example(q: Any, k: Any, v: Any) -> Any:
        # The per-example path before segment_attention: one causal SDPA per example under
        # autograd (the flash kernel's own backward).
        def flat(t: Any) -> Any:
            n = t.shape[1]
            return t.transpose(0, 1).reshape(1, n, rows * row, dim).split(lengths, dim=2)

        outs = [
            F.scaled_dot_product_attention(a, b, c, is_causal=True, enable_gqa=kv_heads != heads)
            for a, b, c in zip(flat(q), flat(k), flat(v), strict=True)
        ]
        return torch.cat(outs, 2)

    kinds = ["dense", "flash_per_example", "per_example"]
    kinds += ["dense_math", "per_example_math"] if math_too else []
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for kind in times:
        step(kind)  # warm-up
    for _ in range(reps):
        for kind in times:
            times[kind].append(step(kind))
    best = {kind: min(ts) for kind, ts in times.items()}
    examples = int((position_ids == 0).sum())
    return {
        "shape": shape,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": dim,
        "rows": rows,
        "row": row,
        "examples": examples,
        **{f"{kind}_ms": round(t * 1e3, 1) for kind, t in best.items()},
        "speedup": round(best["dense"] / best["per_example"], 2),
        "over_flash_per_example": round(best["flash_per_example"] / best["per_example"], 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="large")
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--row", type=int, nargs="+", default=[512])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--math", action="store_true", help="also SDPA's math kernel")
    a = ap.parse_args()
    for row in a.row:
        print(json.dumps(measure(a.shape, a.rows, row, a.reps, a.math)), flush=True)


if __name__ == "__main__":
    main()
