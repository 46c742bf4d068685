"""Model FLOP utilisation of kubetune's default pipeline on this CPU.

    python bench/mfu.py [--quick] [--reps 3] [--large]

--large: TinyLlama-1.1B's whole shape (hidden 2048, 22 layers, 32k untied vocabulary, GQA;
workload.LARGE_32K), one full epoch of its 64 examples per run: the size class users bring
(7B+ is larger still), where matmuls rather than per-element work fill a step. The default
is the 30M model the throughput benchmarks use.

Peak: the best torch matmul rate over square sizes, fp32 and bf16, with torch's default
thread count (the trainer uses the same). Also the rate at the model's own matmul shapes
(tokens x hidden @ hidden x hidden / x mlp), which bounds what any trainer can reach.

Achieved model FLOP/s = real tokens/s x FLOPs per token, with the usual accounting:
- LoRA: 4·N (forward 2·N, backward to the activations 2·N; frozen weights get no
  gradient) + 6·N_lora, where N counts the weights that enter a matmul (every linear
  layer and the tied LM head; the embedding lookup is not a matmul);
- attention: 6·layers·hidden·T per token: PaLM's 12·layers·hidden·T (forward + backward)
  with the causal discount (a token attends to the half of the square before it), T the
  length of the example the token attends within (packing keeps examples apart), averaged
  over tokens: T = sum(len^2) / sum(len). The figure without the discount is kept too.
- full fine-tuning would be 6·N + the same attention term (stated, not run).
MFU = achieved / the best matmul rate of any dtype measured on this machine, square sizes
or the model's own shapes (a slow dtype must not raise the figure, nor a shape the square
sizes happen to run slower); MFU against the dtype in use is shown beside it.
Peak and training runs alternate in fresh processes (peak, train, peak, train, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from common import Child, emit, loadavg, say, stats


def _rate(m: int, k: int, n: int, dtype: Any, seconds: float = 1.0) -> float:
    import torch

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - t0)


def peak_worker(quick: bool, hidden: int = 512, mlp: int = 1408) -> None:
    import torch

    sizes = [1024, 2048] if quick else [1024, 2048, 4096]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "load": loadavg()}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {s: _rate(s, s, s, dt, 0.3 if quick else 1.0) for s in sizes}
        out[f"{name}_peak"] = max(rates.values())
        out[f"{name}_by_size"] = {str(k): v for k, v in rates.items()}
        # The model's shapes: 8 rows x 512 tokens through q/o and the MLP.
        out[f"{name}_model_shapes"] = {
            f"4096x{hidden}@{hidden}x{n}": _rate(4096, hidden, n, dt, 0.3 if quick else 1.0)
            for n in (hidden, mlp)
        }
    emit(out)


def best_peak(peak: dict[str, Any], dtypes: tuple[str, ...] = ("fp32", "bf16")) -> float:
    """The fastest matmul measured here, square sizes and the model's own shapes alike
    (a model shape can beat every square one: 4096x2048@2048x2048 in bf16 did)."""
    return max(
        max(peak[f"{dt}_peak"], *peak.get(f"{dt}_model_shapes", {}).values()) for dt in dtypes
    )


def flops_per_token(
    flops: dict[str, int], lengths: dict[str, Any], lora_params: int, causal: bool = True
) -> float:
    attn_t = lengths["sum_sq"] / lengths["tokens"]
    return (
        4 * flops["matmul_params"]
        + 6 * lora_params
        + (6 if causal else 12) * flops["layers"] * flops["hidden"] * attn_t
    )


def lora_params(flops: dict[str, int], r: int, targets: list[str]) -> int:
    d = flops["hidden"]
    return flops["layers"] * len(targets) * r * 2 * d  # q_proj/v_proj: A (r x d) + B (d x r)


def run(quick: bool = False, reps: int | None = None, large: bool = False) -> dict[str, Any]:
    from throughput import CONFIGS, LORA, _lengths, model_flops
    from workload import FULL, LARGE_32K, QUICK, build

    assert "kubetune" in CONFIGS
    size = QUICK if quick else LARGE_32K if large else FULL
    folder = build(size)
    # Training runs measured by throughput.py in this same session are reused (the MFU of
    # exactly those runs); otherwise kubetune's default configuration is trained here.
    from common import load_results

    prior = load_results().get("throughput.quick" if quick else "throughput", {})
    reused = [r for r in prior.get("runs", {}).get("kubetune", []) if r["size"] == size.name]
    shape = [f"--hidden={size.hidden}", f"--mlp={size.intermediate}"]
    # The large model runs one whole epoch (throughput.STEPS counts steps for the 30M only).
    train_args = [f"--size={size.name}", "--epoch"] if large and not quick else []
    reps = reps or max(len(reused), 1 if quick else 2)
    flops = model_flops(folder / "model")
    lengths = _lengths(folder, size)
    n_lora = lora_params(flops, LORA["r"], LORA["targetModules"])
    per_token = flops_per_token(flops, lengths, n_lora)
    per_token_no_discount = flops_per_token(flops, lengths, n_lora, causal=False)
    rows = []
    quick_flag = ["--quick"] if quick else []
    for rep in range(reps):
        peak = Child("mfu", ["peak", *quick_flag, *shape]).run()
        train = (
            reused[rep]
            if rep < len(reused)
            else Child("throughput", ["kubetune", *quick_flag, *train_args], kubetune=True).run()
        )
        achieved = train["tokens_per_second"] * per_token
        dtype = "bf16" if train["precision"] == "bf16" else "fp32"
        best = best_peak(peak)
        rows.append(
            {
                "peak": peak,
                "train": train,
                "achieved_flops": achieved,
                "dtype": dtype,
                "best_peak": best,
                "mfu": achieved / best,
                "mfu_same_dtype": achieved / best_peak(peak, (dtype,)),
                "mfu_no_causal_discount": achieved * per_token_no_discount / per_token / best,
            }
        )
        say(
            f"mfu rep {rep + 1}/{reps}: {achieved / 1e9:.1f} GFLOP/s achieved, best peak "
            f"{best / 1e9:.0f} -> MFU {rows[-1]['mfu']:.1%}"
        )
    return {
        "size": size.name,
        "large": large,
        "quick": quick,
        "flops": flops,
        "lengths": lengths,
        "flops_per_token": per_token,
        "flops_per_token_no_causal_discount": per_token_no_discount,
        "full_ft_flops_per_token": 6 * flops["matmul_params"]
        + 6 * flops["layers"] * flops["hidden"] * lengths["sum_sq"] / lengths["tokens"],
        "rows": rows,
        "mfu": stats([r["mfu"] for r in rows]),
        "fp32_peak": stats([r["peak"]["fp32_peak"] for r in rows]),
        "bf16_peak": stats([r["peak"]["bf16_peak"] for r in rows]),
        "achieved": stats([r["achieved_flops"] for r in rows]),
        "target_mfu": 0.55,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker" and sys.argv[2] == "peak":
        opt = {a[2:].split("=")[0]: int(a.split("=")[1]) for a in sys.argv if "=" in a}
        peak_worker("--quick" in sys.argv, **opt)
        return
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument("--large", action="store_true", help="TinyLlama-1.1B's shape, whole epochs")
    a = p.parse_args()
    res = run(a.quick, a.reps, a.large)
    print(json.dumps({k: res[k] for k in ("mfu", "fp32_peak", "bf16_peak", "achieved")}, indent=1))


if __name__ == "__main__":
    main()
