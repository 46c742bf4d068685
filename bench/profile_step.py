"""Per-kernel breakdown of one training step on kubetune's default path (torch profiler).

    python bench/profile_step.py [--vocab49k | --large] [--step 3] [--top 15]

Builds the same trainer as throughput.py's `kubetune` configuration (engine.setup.load_all,
engine.args.training_kwargs, recipes.sft.build_trainer) on the maxSeqLength-512 workload
(--large: TinyLlama-1.1B's shape, the model of `run_all.py mfu-large`),
runs until step `--step` (the earlier ones warm up allocator and kernels), profiles that
whole step (forward, backward, optimizer) and prints the top ops by self CPU time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from throughput import _kubetune, _timer
from workload import LARGE_32K, VS, VS_49K, build


def profile(vocab49k: bool, step: int, top: int, large: bool = False) -> str:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from transformers import TrainerCallback

    size = LARGE_32K if large else VS_49K if vocab49k else VS[512]
    model_dir = build(size) / "model"
    holder: dict[str, Any] = {}

    class OneStep(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **k: Any) -> None:
            if state.global_step == step - 1:
                holder["prof"] = torch_profile(activities=[ProfilerActivity.CPU])
                holder["prof"].__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **k: Any) -> None:
            if "prof" in holder and state.global_step == step:
                holder["prof"].__exit__(None, None, None)
                control.should_training_stop = True

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="kt-prof-") as tmp:
        trainer, _, precision = _kubetune(model_dir, size, {}, _timer(), Path(tmp), epoch=True)
        trainer.add_callback(OneStep())
        trainer.train()
    averages = holder["prof"].key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    lines = [
        f"{size.name} ({precision}, vocab {size.model_vocab or size.vocab}), step {step}: "
        f"{total / 1e6:.2f} s self CPU in all",
        "| op | self CPU ms | % | calls |",
        "|---|---:|---:|---:|",
    ]
    for e in rows:
        share = 100 * e.self_cpu_time_total / total
        lines.append(f"| `{e.key}` | {e.self_cpu_time_total / 1e3:.0f} | {share:.1f} | {e.count} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vocab49k", action="store_true")
    p.add_argument("--large", action="store_true", help="TinyLlama-1.1B's shape")
    p.add_argument("--step", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args()
    print(profile(a.vocab49k, a.step, a.top, a.large))


if __name__ == "__main__":
    main()
