"""Quantized memory: weight bytes and peak RSS of LoRA training per quantization mode.

    python bench/memory.py [--quick] [--reps 1]

The model is the real SmolLM2-135M-Instruct through kubetune's `builtin:smollm2-135m-instruct`
loader (converted once into the kubetune cache); --quick uses the small benchmark Llama.
Every mode runs in a fresh process, through kubetune's own path (engine.setup.load_all:
quantization config, device map, prepare_model_for_kbit_training, LoRA; then a few
training steps of the sft recipe), so peak RSS covers loading and training:

    fp32 | bf16 (precision bf16) | 8bit | nf4 | nf4 + double quant

Weight bytes are what the base model's tensors occupy (parameters + buffers + bitsandbytes
quantization state: absmax, nested absmax, codebooks, int8 row scales). Bytes per
*quantized* parameter counts only the layers bitsandbytes replaced (the embedding and
norms stay in the load dtype); the QLoRA paper's figure is 4.127 bits = 0.516 bytes
(NF4 + double quantization, blocks of 64 then 256).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    Child,
    emit,
    git_state,
    load_results,
    loadavg,
    peak_rss_bytes,
    rss_bytes,
    save_result,
    say,
    stamp,
    stats,
)

MODES: dict[str, dict[str, Any]] = {
    "fp32": {"training": {"precision": "fp32"}},
    "bf16": {"training": {"precision": "bf16"}},
    "8bit": {"quantization": {"mode": "8bit"}},
    "nf4": {"quantization": {"mode": "4bit", "quantType": "nf4", "doubleQuant": False}},
    "nf4-dq": {"quantization": {"mode": "4bit", "quantType": "nf4", "doubleQuant": True}},
    # Activations, not weights, dominate a 135M model's peak: the same with checkpointing.
    "nf4-dq-gc": {
        "quantization": {"mode": "4bit", "quantType": "nf4", "doubleQuant": True},
        "training": {"gradientCheckpointing": "on"},
    },
    "fp32-gc": {"training": {"precision": "fp32", "gradientCheckpointing": "on"}},
}
# The same with the frozen weights left in fp32 (modeling/frozen16 off): what bf16
# embeddings and head beside the 4-bit body save, and what a bf16-stored base saves.
MODES["nf4-dq-gc-emb32"] = MODES["nf4-dq-gc"]
MODES["bf16-w32"] = MODES["bf16"]
# "-cold": the quantized-base cache is emptied first, so the run quantizes the checkpoint
# while loading; the plain quantized modes run after a cold one and read its cached copy.
COLD = {f"{m}-cold": m for m in ("8bit", "nf4", "nf4-dq", "nf4-dq-gc")}
QUICK_MODES = ["fp32", "8bit-cold", "nf4-dq-cold", "nf4-dq"]
FULL_MODES = ["fp32", "bf16", "bf16-w32", "8bit-cold", "8bit", "nf4-cold", "nf4"]
FULL_MODES += ["nf4-dq-cold", "nf4-dq"]
FULL_MODES += ["nf4-dq-gc-cold", "nf4-dq-gc", "nf4-dq-gc-emb32", "fp32-gc"]
# The 1.1B model: bf16 (the frozen base stored in bf16, modeling/frozen16) beside fp32.
# Like for like: every 4-bit mode cold and warm, with and without checkpointing.
# (8-bit and NF4 without double quantization: see the 135M table; each 1.1B run takes minutes.)
LARGE_MODES = ["fp32", "fp32-gc", "nf4-dq-cold", "nf4-dq", "nf4-dq-gc-cold", "nf4-dq-gc"]
LARGE_MODES += ["nf4-dq-gc-emb32", "bf16"]
# (quantized mode, its full-precision twin): the same training settings but the quantization.
LIKE_FOR_LIKE = [("nf4-dq", "fp32"), ("nf4-dq-cold", "fp32"), ("nf4-dq-gc", "fp32-gc")]
LIKE_FOR_LIKE += [("nf4-dq-gc-cold", "fp32-gc")]
# The benchmark's own model cache (converted SmolLM2, quantized bases), not the user's.
BENCH_CACHE = Path(__file__).resolve().parent / ".cache" / "kubetune"


def _tensor_bytes(t: Any) -> int:
    return int(t.numel() * t.element_size()) if t is not None else 0


def weight_bytes(model: Any) -> dict[str, int]:
    """Bytes of the base model's tensors, and of its quantized layers alone."""
    total = quant_bytes = quant_params = 0
    seen: set[int] = set()
    for module in model.modules():
        for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            if id(t) in seen:
                continue
            seen.add(id(t))
            nbytes = _tensor_bytes(t)
            cls = type(t).__name__
            if cls == "Params4bit":
                qs = t.quant_state
                # Block scales count; the 16- and 256-entry codebooks (64 B / 1 KiB per layer,
                # whatever its size) do not, as in the QLoRA paper's 4.127 bits.
                nbytes += _tensor_bytes(qs.absmax)
                if qs.nested:
                    nbytes += _tensor_bytes(qs.state2.absmax) + _tensor_bytes(qs.offset)
                quant_params += t.numel() * 2  # two 4-bit values per byte
                quant_bytes += nbytes
            elif cls == "Int8Params":
                nbytes += _tensor_bytes(getattr(t, "SCB", None))
                quant_params += t.numel()
                quant_bytes += nbytes
            if "lora_" not in _name_of(model, module):
                total += nbytes
    return {"weight_bytes": total, "quant_bytes": quant_bytes, "quant_params": quant_params}


_NAMES: dict[int, str] = {}


def _name_of(model: Any, module: Any) -> str:
    if not _NAMES:
        _NAMES.update({id(m): n for n, m in model.named_modules()})
    return _NAMES.get(id(module), "")


def worker(mode: str, quick: bool, large: bool = False) -> None:
    import torch  # noqa: F401  (the runtime floor: torch + transformers imported)
    import transformers  # noqa: F401
    from workload import LARGE_32K, QUICK, build, records

    from kubetune_api.loader import parse_job
    from kubetune_trainer import allocator
    from kubetune_trainer.engine.args import training_kwargs
    from kubetune_trainer.engine.setup import load_all
    from kubetune_trainer.modeling import frozen16
    from kubetune_trainer.recipes import sft
    from kubetune_trainer.recipes.base import RecipeContext
    from kubetune_trainer.records import PreparedDataset

    frozen16.ENABLED = not mode.endswith(("-emb32", "-w32"))
    floor = rss_bytes()
    if large:
        base = str(build(LARGE_32K) / "model")
    else:
        base = str(build(QUICK) / "model") if quick else "builtin:smollm2-135m-instruct"
    rows = records(build(QUICK))[:32]
    with tempfile.TemporaryDirectory(prefix="kt-mem-") as tmp:
        spec: dict[str, Any] = {
            "model": {"base": base},
            "adapter": {"r": 16, "alpha": 32, "targetModules": ["all-linear"]},
            "dataset": {
                "source": "x.jsonl",
                "format": "qa",
                "maxSeqLength": 128,
                "validation": {"fraction": 0},
            },
            "training": {"maxSteps": 2, "microBatchSize": 2},
            "evaluation": {"enabled": False},
            "output": {"uri": str(Path(tmp) / "out")},
        }
        for section, values in MODES[COLD.get(mode, mode)].items():
            spec[section] = {**spec.get(section, {}), **values}
        job = parse_job(
            {
                "apiVersion": "kubetune.io/v1alpha1",
                "kind": "FineTuneJob",
                "metadata": {"name": "mem", "namespace": "bench"},
                "spec": spec,
            }
        )
        prepared = PreparedDataset(
            kind="sft", format="qa", train=rows, validation=[], fingerprint="sha256:bench"
        )
        loaded = load_all(job, prepared, lambda _m: None)
        after_load = rss_bytes()
        peak_load = peak_rss_bytes()
        sizes = weight_bytes(loaded.model.get_base_model())
        n_params = sum(
            p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
            for n, p in loaded.model.get_base_model().named_parameters()
            if "lora_" not in n
        )
        kwargs = training_kwargs(job, Path(tmp), loaded.precision, False, False)
        kwargs["save_strategy"] = "no"
        ctx = RecipeContext(
            job, loaded.model, loaded.tokenizer, prepared, kwargs, [], loaded.precision
        )
        sft.build_trainer(ctx).trainer.train()
    emit(
        {
            "mode": mode,
            "precision": loaded.precision,
            "params": n_params,
            **sizes,
            "bytes_per_param": sizes["weight_bytes"] / n_params,
            "bytes_per_quant_param": sizes["quant_bytes"] / sizes["quant_params"]
            if sizes["quant_params"]
            else None,
            "rss_floor": floor,
            "rss_after_load": after_load,
            "peak_rss_load": peak_load,
            "peak_rss": peak_rss_bytes(),
            "load": loadavg(),
            "dtypes": sorted({str(p.dtype) for p in loaded.model.parameters()}),
            "malloc": allocator.in_use(),
        }
    )


def result_name(quick: bool, large: bool) -> str:
    return ("memory-large" if large else "memory") + (".quick" if quick else "")


def run(
    quick: bool = False,
    reps: int | None = None,
    modes: list[str] | None = None,
    large: bool = False,
) -> dict[str, Any]:
    """All modes; with `modes`, only those, merged into the saved results of the others.

    `large`: the 1.1B-parameter Llama (built once, ~4.4 GB of fp32 shards in bench/.cache)
    instead of SmolLM2-135M; with `quick` it is still the 1.1B model, in three modes."""
    from kubetune_trainer.modeling import builtin

    if large:
        from workload import LARGE_32K, build

        say("memory: building the 1.1B benchmark Llama once (cached afterwards)")
        build(LARGE_32K)
    elif not quick:
        say("memory: converting SmolLM2-135M once (cached afterwards)")
        os.environ["KUBETUNE_CACHE"] = str(BENCH_CACHE)
        builtin.smollm2_dir()
    reps = reps or 1

    saved = load_results().get(result_name(quick, large), {}) if modes else {}
    default = QUICK_MODES if quick else (LARGE_MODES if large else FULL_MODES)
    modes = modes or default
    runs: dict[str, list[dict[str, Any]]] = {**saved.get("runs", {}), **{m: [] for m in modes}}
    flags = (["--quick"] if quick else []) + (["--large"] if large else [])
    for rep in range(reps):
        for mode in modes:
            if mode in COLD:
                shutil.rmtree(BENCH_CACHE / "quantized", ignore_errors=True)
            child = Child("memory", [mode, *flags], kubetune=True)  # as `kubetune` runs it
            r = child.run({"KUBETUNE_CACHE": str(BENCH_CACHE)})
            r["cache"] = "cold" if mode in COLD else "warm"
            runs[mode].append(r)
            say(
                f"memory rep {rep + 1}/{reps} {mode}: weights {r['weight_bytes'] / 2**20:.0f} MiB, "
                f"peak RSS {r['peak_rss'] / 2**20:.0f} MiB"
            )
    fp32_peak = min(r["peak_rss"] for r in runs["fp32"])
    summary = {}
    for mode, rs in runs.items():
        r0 = rs[0]
        summary[mode] = {
            "weight_bytes": r0["weight_bytes"],
            "bytes_per_param": r0["bytes_per_param"],
            "bytes_per_quant_param": r0["bytes_per_quant_param"],
            "bits_per_quant_param": 8 * r0["bytes_per_quant_param"]
            if r0["bytes_per_quant_param"]
            else None,
            "peak_rss": stats([r["peak_rss"] for r in rs]),
            "peak_rss_load": stats([r["peak_rss_load"] for r in rs]),
            "rss_floor": stats([r["rss_floor"] for r in rs]),
            "peak_vs_fp32": min(r["peak_rss"] for r in rs) / fp32_peak,
            "above_floor_vs_fp32": min(r["peak_rss"] - r["rss_floor"] for r in rs)
            / min(r["peak_rss"] - r["rss_floor"] for r in runs["fp32"]),
        }
    return {
        "quick": quick,
        "model": (
            "Llama 1.1B (TinyLlama-1.1B's shape: 32k untied vocabulary, GQA with 4 kv heads; "
            "random init)"
            if large
            else ("llama-quick" if quick else "SmolLM2-135M-Instruct")
        ),
        "runs": runs,
        "summary": summary,
        "like_for_like": like_for_like(summary),
        "cold_vs_warm": cold_vs_warm(summary),
        "targets": {"nf4_bytes_per_param": 0.56, "nf4_peak_vs_fp32": 0.35, "cold_vs_warm": 1.5},
        # Merged into earlier runs (`modes`): which were measured now, and the earlier stamp.
        **(
            {"modes_measured": modes, "earlier": {k: saved.get(k) for k in STAMP_KEYS}}
            if saved
            else {}
        ),
    }


STAMP_KEYS = ("commit", "dirty", "finished_at")


def like_for_like(summary: dict[str, Any]) -> dict[str, float]:
    """Peak RSS of each 4-bit mode over its full-precision twin (same checkpointing)."""
    return {
        f"{q} / {f}": summary[q]["peak_rss"]["min"] / summary[f]["peak_rss"]["min"]
        for q, f in LIKE_FOR_LIKE
        if q in summary and f in summary
    }


def cold_vs_warm(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Cold over warm: the peak while loading (quantizing vs reading the cached copy) and
    the whole run's peak (loading + training)."""
    out = {}
    for cold, warm in COLD.items():
        if cold in summary and warm in summary:
            c, w = summary[cold], summary[warm]
            out[warm] = {
                "load_peak": c["peak_rss_load"]["min"] / w["peak_rss_load"]["min"],
                "peak": c["peak_rss"]["min"] / w["peak_rss"]["min"],
            }
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], "--quick" in sys.argv, "--large" in sys.argv)
        return
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--large", action="store_true", help="the 1.1B model instead of SmolLM2")
    p.add_argument("--reps", type=int)
    p.add_argument("--modes", help="comma-separated; merged into bench/results/memory.json")
    a = p.parse_args()
    state = git_state()  # at the start, as run_all takes it
    res = run(a.quick, a.reps, a.modes.split(",") if a.modes else None, a.large)
    if a.modes:
        # The merged file holds runs of two measurements: the new stamp is the merge's (run()
        # keeps the earlier one beside it, with the modes measured again).
        save_result(result_name(a.quick, a.large), stamp(res, state))
    print(json.dumps(res["summary"], indent=1))


if __name__ == "__main__":
    main()
