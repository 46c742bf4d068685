"""Data at scale: prepare + tokenize + pack, memory per token, time to the first step.

Synthetic QA (pseudo-words, lognormal lengths: median 120 tokens, sigma 0.8, clipped to
16-512) at 10k / 100k / 1M examples, the workload's 8k-vocabulary BPE tokenizer with its
ChatML template, and a small Llama (hidden 128, 2 layers) so that the data, not the
model, is what the first step waits for. Each figure comes from a fresh process:

- prep: `prepare(job)` (read + validate + split), then the Arrow store cold (tokenize +
  pack plan) and warm (reused entry); peak RSS (VmHWM) and bytes held per token; at
  <= 100k also the old path (Python-list tokenize + in-memory position-id packing).
- run: `kubetune train` (maxSteps 1) from process start to its "step 1/1" line, with a
  cold cache and again warm (same KUBETUNE_CACHE, a new output).
- trl: TRL SFTTrainer(packing=True, bfd) on the same rows, model and tokenizer, from process
  start to the end of its first optimizer step.

    python bench/data_scale.py --worker prep 10000
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import Child, emit, loadavg, peak_rss_bytes, rss_bytes, say
from workload import CACHE, Size, build, length_summary

SIZE = Size("data-scale", 128, 2, 4, 256, 8192, 64, max_len=512)
FULL_SIZES = (10_000, 100_000, 200_000, 1_000_000)
QUICK_SIZES = (2_000,)
MAX_LEN = 512


def data_file(n: int) -> Path:
    """bench/.cache/data-scale/qa-<n>.jsonl: question/answer rows, lognormal token lengths."""
    folder = build(SIZE)
    path = folder / f"qa-{n}.jsonl"
    if path.is_file():
        return path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder / "model")
    rnd = random.Random(n)
    words = sorted({w for r in _rows(folder / "data.jsonl") for w in r.split()})
    weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
    sample = " ".join(rnd.choices(words, cum_weights=weights, k=2000))
    per_word = len(tok(sample, add_special_tokens=False)["input_ids"]) / 2000
    tmp = path.with_suffix(".part")
    with open(tmp, "w") as f:
        for _ in range(n):
            target = max(16, min(MAX_LEN, round(rnd.lognormvariate(math.log(120), 0.8))))
            budget = max(4, target - 10)  # ChatML scaffolding ~10 tokens
            p = max(1, round(budget * rnd.uniform(0.3, 0.6) / per_word))
            c = max(1, round(budget / per_word) - p)
            q, a = (
                " ".join(rnd.choices(words, cum_weights=weights, k=p)),
                " ".join(rnd.choices(words, cum_weights=weights, k=c)),
            )
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    tmp.rename(path)
    return path


def _rows(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out += [r["question"], r["answer"]]
    return out


def _job(source: Path, out: Path, name: str = "scale") -> Any:
    from kubetune_api.loader import parse_job

    spec = {
        "model": {"base": str(build(SIZE) / "model")},
        "adapter": {"r": 8, "alpha": 16, "targetModules": ["all-linear"]},
        "dataset": {"source": str(source), "format": "qa", "maxSeqLength": MAX_LEN,
                    "packing": "position_ids", "validation": {"fraction": 0.01}},
        "training": {"maxSteps": 1, "microBatchSize": 8, "loggingSteps": 1, "seed": 7},
        "evaluation": {"enabled": False},
        "output": {"uri": str(out)},
    }  # fmt: skip
    return parse_job({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
                      "metadata": {"name": name, "namespace": "bench"}, "spec": spec})  # fmt: skip


# --- workers (fresh processes) -------------------------------------------------------------


def worker_prep(n: int) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from kubetune_trainer.data.streamed import prepare_for_training
    from kubetune_trainer.data.token_cache import tokenized_splits

    src, tmp = data_file(n), Path(os.environ["KUBETUNE_CACHE"])
    job = _job(src, tmp / "out")
    tok = AutoTokenizer.from_pretrained(build(SIZE) / "model")
    ds = job.spec.dataset
    t0 = time.monotonic()
    prep = prepare_for_training(job)  # what training does: on disk above 64 MiB
    t_prepare = time.monotonic() - t0
    t0 = time.monotonic()
    prepare_for_training(job)  # a second start: the prepared records are reused
    t_prepare_warm = time.monotonic() - t0
    import datasets  # noqa: F401 - its import is not memory held by the data
    import pyarrow  # noqa: F401

    rss0 = rss_bytes()
    t0 = time.monotonic()
    cold = tokenized_splits(prep, tok, ds, "position_ids")
    t_cold = time.monotonic() - t0
    tokens = cold.train.total_tokens
    held = rss_bytes() - rss0
    t0 = time.monotonic()
    from kubetune_trainer.data.packed import save_plan

    save_plan(tmp, cold.train.length_array, MAX_LEN)  # the packing step alone
    t_pack = time.monotonic() - t0
    t0 = time.monotonic()
    warm = tokenized_splits(prep, tok, ds, "position_ids")
    t_warm = time.monotonic() - t0
    out = {
        "examples": n, "train_examples": len(prep.train), "tokens": tokens,
        "lengths": length_summary(cold.train.lengths), "prepare_s": round(t_prepare, 2),
        "prepare_warm_s": round(t_prepare_warm, 2), "streamed": not isinstance(prep.train, list),
        "tokenize_pack_cold_s": round(t_cold, 2), "pack_s": round(t_pack, 2),
        "reuse_warm_s": round(t_warm, 2), "reused": not warm.built,
        "packed_rows": len(cold.train_rows), "rss_before_tokenize": rss0,
        "held_bytes_per_token": round(held / max(tokens, 1), 2),
        "disk_bytes_per_token": round(_du(cold.folder) / max(tokens, 1), 2),
        "peak_rss": peak_rss_bytes(),
    }  # fmt: skip
    return out


def worker_lists(n: int) -> dict[str, Any]:
    """The old path in its own process: Python-list tokenize + in-memory packing."""
    from transformers import AutoTokenizer

    from kubetune_trainer.data import prepare
    from kubetune_trainer.data.collate import pack_position_ids
    from kubetune_trainer.data.tokenize import tokenize

    job = _job(data_file(n), Path(os.environ["KUBETUNE_CACHE"]) / "out")
    tok = AutoTokenizer.from_pretrained(build(SIZE) / "model")
    prep = prepare(job)
    rss0 = rss_bytes()
    t0 = time.monotonic()
    lists = tokenize("sft", prep.train, tok, job.spec.dataset)
    t_tok = time.monotonic() - t0
    packed = pack_position_ids(lists, MAX_LEN)
    tokens = sum(lists.lengths)
    return {"tokenize_s": round(t_tok, 2), "tokenize_pack_s": round(time.monotonic() - t0, 2),
            "held_bytes_per_token": round((rss_bytes() - rss0) / max(tokens, 1), 2),
            "packed_rows": len(packed), "peak_rss": peak_rss_bytes()}  # fmt: skip


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def worker_trl(n: int) -> dict[str, Any]:
    t_start = float(os.environ["BENCH_T0"])
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    folder = build(SIZE)
    tok = AutoTokenizer.from_pretrained(folder / "model")
    model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32)
    from peft import LoraConfig

    raw = load_dataset("json", data_files=str(data_file(n)), split="train",
                       cache_dir=os.environ["KUBETUNE_CACHE"])  # fmt: skip

    def to_chat(r: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": [{"role": "user", "content": r["question"]}],
                "completion": [{"role": "assistant", "content": r["answer"]}]}  # fmt: skip

    procs = 2 if n >= 20_000 else None
    data = raw.map(to_chat, remove_columns=["question", "answer"], num_proc=procs)
    first: dict[str, float] = {}

    class First(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            first.setdefault("t", time.time())

    args = SFTConfig(output_dir=os.environ["KUBETUNE_CACHE"] + "/trl", max_steps=1,
                     per_device_train_batch_size=8, packing=True, max_length=MAX_LEN,
                     report_to=[], dataset_num_proc=procs, save_strategy="no",
                     logging_steps=1, disable_tqdm=True, seed=7, use_cpu=True,
                     bf16=False)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                         peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"),
                         callbacks=[First()])  # fmt: skip
    t_built = time.time()
    trainer.train()
    return {"first_step_s": round(first["t"] - t_start, 2),
            "build_s": round(t_built - t_start, 2), "peak_rss": peak_rss_bytes()}  # fmt: skip


def first_step_run(n: int, cache: Path, out: Path) -> dict[str, Any]:
    """`kubetune train` from process start to its step-1 line (first_step.attempt: stopped
    there by SIGTERM, as a preemption would; what comes after, the evaluations, is not what
    this measures); its peak RSS, and whether it tokenized."""
    import yaml
    from first_step import attempt

    spec = out.parent / f"{out.name}.yaml"
    spec.write_text(yaml.safe_dump(_job(data_file(n), out).to_manifest()))
    r = attempt(spec, cache, stop_at=1, watch=("data: tokenizing",))
    return {"first_step_s": r["seconds"], "peak_rss": r["peak_rss"],
            "tokenized": bool(r["seen"])}  # fmt: skip


def run(quick: bool = False) -> dict[str, Any]:
    wanted = os.environ.get("BENCH_DATA_SIZES")  # e.g. 10000,100000
    sizes = (
        QUICK_SIZES if quick else tuple(int(x) for x in wanted.split(",")) if wanted else FULL_SIZES
    )
    result: dict[str, Any] = {
        "quick": quick,
        "sizes": {},
        "max_len": MAX_LEN,
        "cores": os.cpu_count(),
    }
    for n in sizes:
        say(f"data-scale {n:,}: data file")
        data_file(n)
        work = CACHE / "data-scale-runs" / str(n)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        r: dict[str, Any] = {"load_before": loadavg()}
        say(f"data-scale {n:,}: prepare + tokenize + pack")
        r["prep"] = Child("data_scale", ["prep", str(n)], timeout=7200).run(
            {"KUBETUNE_CACHE": str(work / "prep-cache")}
        )
        shutil.rmtree(work / "prep-cache", ignore_errors=True)
        say(f"data-scale {n:,}: kubetune train, cold then warm")
        if n <= 100_000:  # ~49 bytes a token in Python lists: 1M would need ~6 GB more
            r["lists"] = Child("data_scale", ["lists", str(n)], timeout=7200).run(
                {"KUBETUNE_CACHE": str(work / "prep-cache")}
            )
        r["run_cold"] = first_step_run(n, work / "cache", work / "cold")
        r["run_warm"] = first_step_run(n, work / "cache", work / "warm")
        say(f"data-scale {n:,}: TRL SFTTrainer packing=True")
        r["trl"] = Child("data_scale", ["trl", str(n)], timeout=7200).run(
            {"KUBETUNE_CACHE": str(work / "trl-cache"), "BENCH_T0": str(time.time())}
        )
        r["load_after"] = loadavg()
        shutil.rmtree(work, ignore_errors=True)
        result["sizes"][str(n)] = r
        say(f"data-scale {n:,}: {json.dumps(r)[:400]}")
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        n = int(sys.argv[3])
        emit({"prep": worker_prep, "lists": worker_lists, "trl": worker_trl}[sys.argv[2]](n))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
