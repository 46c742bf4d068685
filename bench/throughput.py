"""Trainer throughput: the usual recipe vs kubetune's own pipeline, real tokens per second.

    python bench/throughput.py [--quick] [--reps 3] [--configs baseline,kubetune]

The same number of optimizer steps (micro batch 4) over the same example pool per
configuration, each in a fresh process, the configurations interleaved (A B C, A B C, ...)
so machine load hits them alike:

- baseline: what a user writes from the usual recipe: datasets.map with the tokenizer
  padding every example to max_length, DataCollatorForLanguageModeling, transformers
  Trainer + peft LoRA, fp32.
- kubetune*: kubetune's own code path on a FineTuneJob spec: engine.setup.load_all
  (hardware, precision, modeling loader, LoRA), engine.args.training_kwargs, and
  recipes.sft.build_trainer (tokenize, data.collate packing/padding). Variants change
  only spec fields (packing, precision), so the defaults are compared with alternatives.

Real tokens are counted per batch (input ids that are not padding) by wrapping the data
collator; time runs from the first step's start to the last step's end, so collation,
optimizer steps and one-time kernel set-up are all inside it. Checkpointing is off
(save_strategy no) in both: it is measured by checkpoint_io.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alternatives import ALTERNATIVES, Setup, chat_texts, lora_model, trainer_args
from alternatives import build as build_alternative
from common import Child, emit, loadavg, peak_rss_bytes, say, stats
from workload import (
    FULL,
    LARGE_32K,
    QUICK,
    VS,
    VS_49K,
    VS_1024,
    VS_QUICK,
    Size,
    build,
    length_summary,
    records,
)  # fmt: skip

# name -> spec overrides on top of the shared spec (None: the usual-recipe baseline)
CONFIGS: dict[str, dict[str, Any] | None] = {
    "baseline": None,
    "kubetune": {},  # kubetune's defaults, whatever they resolve to on this machine
    "kt-posid-bf16": {"dataset": {"packing": "position_ids"}, "training": {"precision": "bf16"}},
    "kt-pad-fp32": {"dataset": {"packing": "none"}, "training": {"precision": "fp32"}},
    "kt-wrapped-fp32": {"dataset": {"packing": "wrapped"}, "training": {"precision": "fp32"}},
}
FULL_CONFIGS = ["baseline", "kubetune", "kt-posid-bf16", "kt-pad-fp32"]
# kubetune's default path with an opt-in training loss (recipes/lm_loss.py, KUBETUNE_LOSS;
# the default, the model's own, is "kubetune" itself): the head on completion rows in one
# block, or chunked head + cross-entropy on those rows.
LOSS_VARIANTS = {"kt-select-loss": "select", "kt-fused-loss": "fused"}
CONFIGS.update({name: {} for name in LOSS_VARIANTS})
# kubetune's default path with TrainingArguments(torch_compile=True) (inductor on the CPU).
CONFIGS["kt-compile"] = {}
# kubetune's default path with transformers' sdpa over whole packed rows (a dense block-
# diagonal mask) instead of attention inside each example (modeling/packed_attention.py).
CONFIGS["kt-sdpa"] = {"model": {"attnImplementation": "sdpa"}}
# kubetune's default path with the frozen base left in fp32 under bf16 autocast (as before
# modeling/frozen16: autocast casts every frozen weight at each use).
CONFIGS["kt-weights-fp32"] = {}
# kubetune's default path with jemalloc preloaded (KUBETUNE_ALLOCATOR=jemalloc, opt-in:
# kubetune_trainer/allocator.py) instead of glibc's malloc.
CONFIGS["kt-jemalloc"] = {}
ENVS = {"kt-jemalloc": {"KUBETUNE_ALLOCATOR": "jemalloc"}}
# One full epoch each, side by side with what users pick instead (bench/alternatives.py);
# kubetune with jemalloc beside it: the allocator's speed cost measured in the same run.
VS_CONFIGS = ["kubetune", "kt-jemalloc", *ALTERNATIVES]
MICRO_BATCH = 4
STEPS = {QUICK.name: 6, FULL.name: 16}  # steps timed per run (after the first began)
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["q_proj", "v_proj"]}


def job_for(
    model_dir: Path, size: Size, overrides: dict[str, Any], out: Path, epoch: bool = False
) -> Any:
    from kubetune_api.loader import parse_job

    spec: dict[str, Any] = {
        "model": {"base": str(model_dir)},
        "adapter": dict(LORA),
        "dataset": {
            "source": "bench.jsonl",
            "format": "qa",
            "maxSeqLength": size.max_len,
            "validation": {"fraction": 0},
        },
        "training": {
            **({"epochs": 1} if epoch else {"maxSteps": STEPS[size.name]}),
            "microBatchSize": MICRO_BATCH,
            "learningRate": 2e-4,
        },
        "evaluation": {"enabled": False},
        "output": {"uri": str(out)},
    }
    for section, values in overrides.items():
        spec[section] = {**spec.get(section, {}), **values}
    return parse_job(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": spec,
        }
    )


class Counting:
    """Wraps a data collator: counts the real (non-pad) input tokens of every batch."""

    def __init__(self, inner: Any, pad_id: int) -> None:
        self.inner, self.pad_id = inner, pad_id
        self.tokens: list[int] = []
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, batch: Any) -> Any:
        out = self.inner(batch)
        ids = out["input_ids"]
        self.tokens.append(int((ids != self.pad_id).sum()))
        self.shapes.append(tuple(ids.shape))
        return out


def _timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.end = 0.0
            self.steps = 0
            self.ends: list[float] = []

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.end = time.perf_counter()
            self.steps += 1
            self.ends.append(self.end)

    return StepTimer()


def _baseline(model_dir: Path, size: Size, timer: Any, staging: Path) -> tuple[Any, Any, str]:
    """The usual recipe, written as its tutorials write it."""
    import datasets
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = lora_model(model_dir, LORA)
    rows = records(model_dir.parent)

    def fmt(batch: dict[str, list[str]]) -> dict[str, Any]:
        texts = chat_texts(tok, batch)
        return tok(texts, padding="max_length", truncation=True, max_length=size.max_len)

    ds = datasets.Dataset.from_list(rows).map(
        fmt, batched=True, remove_columns=["prompt", "completion"]
    )
    # max_steps overrides the shared args' one epoch: every configuration times the same steps.
    args = TrainingArguments(**trainer_args(staging, MICRO_BATCH), max_steps=STEPS[size.name])
    collator = Counting(DataCollatorForLanguageModeling(tok, mlm=False), tok.pad_token_id)
    trainer = Trainer(
        model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[timer]
    )
    return trainer, collator, "fp32"


def _kubetune(
    model_dir: Path,
    size: Size,
    overrides: dict[str, Any],
    timer: Any,
    staging: Path,
    epoch: bool = False,
    compile_model: bool = False,
) -> tuple[Any, Any, str]:
    """kubetune's engine + sft recipe on a FineTuneJob (the path `kubetune run` takes)."""
    from kubetune_trainer.engine.args import training_kwargs
    from kubetune_trainer.engine.setup import load_all
    from kubetune_trainer.recipes import sft
    from kubetune_trainer.recipes.base import RecipeContext
    from kubetune_trainer.records import PreparedDataset

    job = job_for(model_dir, size, overrides, staging / "out", epoch)
    prepared = PreparedDataset(
        kind="sft",
        format="qa",
        train=records(model_dir.parent),
        validation=[],
        fingerprint="sha256:bench",
    )
    loaded = load_all(job, prepared, lambda _msg: None)
    kwargs = training_kwargs(job, staging, loaded.precision, False, False)
    kwargs["save_strategy"] = "no"  # checkpoint I/O has its own benchmark
    if compile_model:
        kwargs["torch_compile"] = True
    ctx = RecipeContext(
        job, loaded.model, loaded.tokenizer, prepared, kwargs, [timer], loaded.precision
    )
    trainer = sft.build_trainer(ctx).trainer
    collator = Counting(trainer.data_collator, loaded.tokenizer.pad_token_id)
    trainer.data_collator = collator
    return trainer, collator, loaded.precision


def model_flops(model_dir: Path) -> dict[str, int]:
    """Parameter counts that enter the FLOP formula (see mfu.py)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    d, L, f, v = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    kv = d * c.num_key_value_heads // c.num_attention_heads
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f  # q,o + k,v + gate,up,down
    return {
        "matmul_params": L * per_layer + v * d,
        "layers": L,
        "hidden": d,
        "embedding_params": v * d,
    }


def ours(config: str) -> bool:
    """kubetune's configurations run with the malloc `kubetune` gives them (ENVS); the
    baseline and the alternatives run as their users start them."""
    return config.startswith(("kubetune", "kt-"))


def worker(config: str, quick: bool, size: Size | None = None, epoch: bool = False) -> None:
    import torch

    from kubetune_trainer import allocator

    size = size or (QUICK if quick else FULL)
    if config in LOSS_VARIANTS:
        os.environ["KUBETUNE_LOSS"] = LOSS_VARIANTS[config]
    if config == "kt-weights-fp32":
        from kubetune_trainer.modeling import frozen16

        frozen16.ENABLED = False
    folder = build(size)
    model_dir = folder / "model"
    torch.manual_seed(0)
    timer = _timer()
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        if config in ALTERNATIVES:
            setup = Setup(model_dir, records(folder), size.max_len, MICRO_BATCH, LORA, timer,
                          Path(tmp), Counting)  # fmt: skip
            trainer, collator = build_alternative(config, setup)
            # What the Trainer will autocast to (TRL's SFTConfig turns bf16 on by default).
            precision = "bf16" if trainer.args.bf16 else "fp32"
        elif CONFIGS[config] is None:
            trainer, collator, precision = _baseline(model_dir, size, timer, Path(tmp))
        else:
            trainer, collator, precision = _kubetune(
                model_dir, size, CONFIGS[config] or {}, timer, Path(tmp), epoch,
                config == "kt-compile",
            )  # fmt: skip
        load_before = loadavg()
        trainer.train()
    seconds = timer.end - (timer.start or timer.end)
    tokens = sum(collator.tokens[: timer.steps])
    widths = [w for _, w in collator.shapes[: timer.steps]]
    emit(
        {
            "config": config,
            "size": size.name,
            "precision": precision,
            "steps": timer.steps,
            "seconds": seconds,
            "real_tokens": tokens,
            "tokens_per_second": tokens / seconds,
            "padded_tokens": sum(b * w for b, w in collator.shapes[: timer.steps]),
            "mean_width": sum(widths) / max(len(widths), 1),
            "peak_rss": peak_rss_bytes(),
            "load_before": load_before,
            "load_after": loadavg(),
            "sampling": str(trainer.args.train_sampling_strategy),
            "torch_threads": torch.get_num_threads(),
            "malloc": allocator.in_use(),
            # step ends from the first step's start: the first holds one-time set-up
            # (torch.compile's compilation); the rest is the steady state.
            "step_ends": [round(e - (timer.start or e), 3) for e in timer.ends],
        }
    )


def boundary_check(quick: bool) -> dict[str, Any]:
    """Does packing let attention cross examples? Logits of each example alone vs inside a
    packed row built by kubetune's pack_position_ids + PackedCollator (fp32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune_api.spec_data import DatasetSpec
    from kubetune_trainer.data.collate import PackedCollator, pack_position_ids, pack_wrapped
    from kubetune_trainer.data.tokenize import tokenize_sft

    size = QUICK if quick else FULL
    model_dir = build(size) / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.config.use_cache = False
    ds = DatasetSpec(source="x.jsonl", format="qa", max_seq_length=size.max_len)
    data = tokenize_sft(records(model_dir.parent)[:24], tok, ds)
    out: dict[str, Any] = {}
    for mode, pack in (("position_ids", pack_position_ids), ("wrapped", pack_wrapped)):
        rows = pack(data, size.max_len)
        if mode == "position_ids":  # the row holding the most examples
            row = max(rows, key=lambda r: r["position_ids"].count(0))
            n_real = len(row["input_ids"])
            starts = [i for i in range(n_real) if row["position_ids"][i] == 0]
        else:  # the stream is the examples in order: boundaries from their lengths
            row, n_real = rows[0], len(rows[0]["input_ids"])
            starts = [s for s in itertools.accumulate([0, *data.lengths]) if s < n_real]
        batch = PackedCollator(tok.pad_token_id, size.max_len, mode == "wrapped")([row])
        worst = 0.0
        with torch.no_grad():
            packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            ids = batch["input_ids"][0]
            for s, e in itertools.pairwise([*starts, n_real]):
                alone = model(input_ids=ids[s:e][None]).logits[0]
                worst = max(worst, float((alone - packed[s:e]).abs().max()))
        out[mode] = {"examples_in_row": len(starts), "max_abs_logit_diff": worst}
    return out


def run(quick: bool = False, reps: int | None = None, configs: list[str] | None = None) -> dict:
    size = QUICK if quick else FULL
    folder = build(size)
    reps = reps or (1 if quick else 2)
    configs = configs or (["baseline", "kubetune"] if quick else FULL_CONFIGS)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(reps):
        for c in configs:  # interleaved: every configuration sees the same load drift
            r = Child("throughput", [c] + (["--quick"] if quick else []), kubetune=ours(c)).run(
                ENVS.get(c)
            )
            say(
                f"throughput rep {rep + 1}/{reps} {c}: {r['tokens_per_second']:.0f} tok/s "
                f"({r['precision']}, {r['steps']} steps, width {r['mean_width']:.0f})"
            )
            runs[c].append(r)

    lengths = _lengths(folder, size)
    summary = {c: stats([r["tokens_per_second"] for r in rs]) for c, rs in runs.items()}
    ratios = {}
    if "baseline" in runs:
        for c in configs:
            if c != "baseline":
                per_rep = [
                    k["tokens_per_second"] / b["tokens_per_second"]
                    for k, b in zip(runs[c], runs["baseline"], strict=True)
                ]
                ratios[c] = stats(per_rep)
    return {
        "size": size.name,
        "quick": quick,
        "reps": reps,
        "micro_batch": MICRO_BATCH,
        "steps": STEPS[size.name],
        "lora": LORA,
        "lengths": lengths,
        "runs": runs,
        "tokens_per_second": summary,
        "ratio_vs_baseline": ratios,
        "boundary": boundary_check(quick),
        "flops": model_flops(folder / "model"),
        "target_ratio": 2.5,
    }


def run_vs(
    quick: bool = False,
    reps: int | None = None,
    configs: list[str] | None = None,
    sizes: dict[int, Size] | None = None,
) -> dict:
    """One full epoch per run, kubetune's default path against HF Trainer and TRL, at
    maxSeqLength 512 and 2048, runs interleaved; min/median real tokens/s and ratios."""
    reps = reps or (1 if quick else 3)
    configs = configs or VS_CONFIGS
    sizes = sizes or (VS_QUICK if quick else VS)
    out: dict[str, Any] = {
        "reps": reps,
        "quick": quick,
        "configs": configs,
        "micro_batch": MICRO_BATCH,
    }
    out["runs"], out["tokens_per_second"], out["ratios"], out["lengths"] = {}, {}, {}, {}
    for max_len, size in sizes.items():
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
        for rep in range(reps):
            for c in configs:  # interleaved: every configuration sees the same load drift
                args = [c, f"--size={size.name}", "--epoch"]
                try:
                    r = Child("throughput", args, timeout=3600, kubetune=ours(c)).run(ENVS.get(c))
                except RuntimeError as e:  # e.g. an alternative that does not run here
                    say(f"throughput-vs {max_len} {c}: FAILED {str(e).splitlines()[-1]}")
                    continue
                say(
                    f"throughput-vs {max_len} rep {rep + 1}/{reps} {c}: "
                    f"{r['tokens_per_second']:.0f} tok/s ({r['steps']} steps, "
                    f"width {r['mean_width']:.0f}, load {r['load_after']})"
                )
                runs[c].append(r)
        key = str(max_len)
        out["runs"][key] = runs
        out["lengths"][key] = _lengths(build(size), size)
        tps = {c: stats([r["tokens_per_second"] for r in rs]) for c, rs in runs.items() if rs}
        out["tokens_per_second"][key] = tps
        kt = tps.get("kubetune")
        out["ratios"][key] = {
            c: kt["median"] / v["median"] for c, v in tps.items() if kt and c != "kubetune"
        }
    return out


def _lengths(folder: Path, size: Size) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from kubetune_api.spec_data import DatasetSpec
    from kubetune_trainer.data.tokenize import tokenize_sft

    tok = AutoTokenizer.from_pretrained(folder / "model")
    ds = DatasetSpec(source="x.jsonl", format="qa", max_seq_length=size.max_len)
    data = tokenize_sft(records(folder), tok, ds)
    out = length_summary(data.lengths)
    out["sum_sq"] = sum(n * n for n in data.lengths)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--boundary-only":  # refresh saved results
        from common import load_results, save_result

        name = "throughput.quick" if "--quick" in sys.argv else "throughput"
        saved = load_results()[name]
        saved["boundary"] = boundary_check("--quick" in sys.argv)
        save_result(name, saved)
        print(json.dumps(saved["boundary"]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sizes = {s.name: s for s in (*VS.values(), *VS_QUICK.values(), VS_49K, VS_1024, LARGE_32K)}
        size = next((sizes[a[7:]] for a in sys.argv if a.startswith("--size=")), None)
        worker(sys.argv[2], "--quick" in sys.argv, size, "--epoch" in sys.argv)
        return
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument("--configs")
    p.add_argument("--vs", action="store_true", help="full epochs against HF Trainer and TRL")
    p.add_argument("--max-len", type=int, help="--vs at this maxSeqLength only (512, 2048)")
    p.add_argument("--vocab49k", action="store_true", help="--vs on a 49k-vocabulary model")
    p.add_argument("--out", help="also write the --vs result as JSON here")
    a = p.parse_args()
    configs = a.configs.split(",") if a.configs else None
    if a.vs:
        sizes = {512: VS_49K} if a.vocab49k else None
        if a.max_len:
            sizes = {a.max_len: (VS_QUICK if a.quick else VS)[a.max_len]}
        vs = run_vs(a.quick, a.reps, configs, sizes)
        if a.out:
            Path(a.out).write_text(json.dumps(vs, indent=1))
        print(json.dumps({k: vs[k] for k in ("tokens_per_second", "ratios")}, indent=1))
        return
    res = run(a.quick, a.reps, configs)
    print(
        json.dumps(
            {k: res[k] for k in ("tokens_per_second", "ratio_vs_baseline", "boundary", "lengths")},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
