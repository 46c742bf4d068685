"""Thin helpers behind examples/notebooks/medical_qlora.ipynb: one call per notebook cell.

Each helper calls the functions `kubetune run` calls (hardware.system_report, prepare,
loader.resolve_base, engine.setup.load_all, engine.run.run_job, the run's adapter record
and report) and only adds what a notebook needs on top: a display, a live progress bar and
a loss plot. Nothing here trains, evaluates or saves differently from the CLI.

Importing this package imports neither torch nor IPython; outside a notebook every display
falls back to printing its plain text.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset

from .display import html_table, pre, show
from .live import LiveProgress, MetricsFollower, read_metrics

if TYPE_CHECKING:  # engine.setup imports torch: not at import time
    from kubetune_trainer.engine.setup import Loaded

GIB = 1024**3


# -- environment and job -------------------------------------------------------------------
def environment_text(system: Any) -> str:
    """GPU (or CPU) and its free memory, then library versions; on a CPU: slow, and why."""
    free, total = system.memory_available_bytes / GIB, system.memory_total_bytes / GIB
    if system.device == "cuda":
        head = (
            f"GPU: {system.device_name} x{system.device_count}, {free:.1f} of {total:.1f} GiB "
            f"GPU memory free, bf16 {'yes' if system.bf16_supported else 'no'}"
        )
    else:
        head = (
            f"No GPU: CPU {system.device_name} with {system.cpu_count} cores, {free:.1f} of "
            f"{total:.1f} GiB RAM free.\nTraining will run on the CPU and be slow: fine for "
            "builtin:tiny-llama or a ~100M model, far too slow for an 8B model (use a GPU "
            "runtime; in Colab: Runtime > Change runtime type > GPU)."
        )
    libs = "\n".join(f"  {k:<14}{v}" for k, v in system.versions.items())
    return f"{head}\npython {system.python}\n{libs}"


def environment() -> Any:
    """The trainer's system report (the one `kubetune run` logs), displayed."""
    from kubetune_trainer.modeling import hardware

    system = hardware.system_report()
    show(environment_text(system))
    return system


def quantization_for(choice: str, system: Any) -> str:
    """The QUANTIZATION parameter: auto = 4-bit QLoRA on a GPU, full weights on a CPU."""
    if choice == "auto":
        return "4bit" if system.device == "cuda" else "none"
    if choice not in ("4bit", "8bit", "none"):
        raise ValueError(f"QUANTIZATION must be auto, 4bit, 8bit or none, not {choice!r}")
    return choice


def quantization_spec(mode: str) -> dict[str, Any]:
    """spec.quantization for a mode: NF4 with double quantization for 4-bit (QLoRA)."""
    if mode == "4bit":
        return {"mode": "4bit", "quantType": "nf4", "doubleQuant": True, "computeDtype": "auto"}
    return {"mode": mode}


# -- dataset -------------------------------------------------------------------------------
@dataclass
class DatasetView:
    prepared: PreparedDataset
    base: Any  # modeling.loader.BaseModel: where the tokenizer (and later the model) lives
    tokenizer: Any
    example: tuple[str, str]  # (prompt, completion) of the first training record, as trained

    def text(self) -> str:
        p, s = self.prepared, self.prepared.stats
        return "\n".join(
            [
                f"format {p.format} ({p.kind} records), fingerprint {p.fingerprint}",
                f"rows read {s.read}, kept {s.kept}, skipped {s.skipped} (bad rows), "
                f"filtered {s.filtered}, truncated {s.truncated}",
                f"split: {len(p.train)} train / {len(p.validation)} validation (held out)",
                *[f"  problem: {x}" for x in s.problems[:5]],
                "",
                "example prompt (masked from the loss):",
                self.example[0],
                "example completion (the loss target):",
                self.example[1],
            ]
        )


def dataset(job: FineTuneJob) -> DatasetView:
    """Read, validate and split the data as `kubetune run` does; show counts and one example.

    The example is rendered with the base model's own tokenizer and the job's template, so
    it is the exact text the model trains on.
    """
    from kubetune_trainer.data import prepare
    from kubetune_trainer.data.templates import messages_of, render
    from kubetune_trainer.engine.setup import training_texts
    from kubetune_trainer.modeling import loader

    prepared = prepare(job)
    ds = job.spec.dataset
    # builtin:tiny-llama trains its tokenizer on the prepared text (cached: run_job reuses it).
    base = loader.resolve_base(job.spec, training_texts(prepared))
    tokenizer = loader.load_tokenizer(job.spec, base)
    example = render(messages_of(prepared.train[0], ds.system_prompt), tokenizer, ds.template)
    view = DatasetView(prepared, base, tokenizer, example)
    show(view.text())
    return view


# -- model ---------------------------------------------------------------------------------
@dataclass
class ModelView:
    job: FineTuneJob  # the job it was loaded for: train() refuses another one
    loaded: Loaded  # load_all's result: the very object run_job trains
    quantized_layers: dict[str, int]  # bitsandbytes Linear layers by kind: {"4-bit": 14, ...}
    in_use: tuple[str, int]  # ("CUDA allocated" | "process RSS", bytes) after the load
    trained: bool = False  # set by train(): a model trains once, a rerun loads it afresh

    def summary_rows(self) -> list[list[str]]:
        ld, q = self.loaded, self.job.spec.quantization
        share = 100 * ld.trainable / max(ld.total, 1)
        where, used = self.in_use
        mode = q.mode
        if mode == "4bit":
            mode += f" ({q.quant_type}, double quantization {'on' if q.double_quant else 'off'})"
        rows = [
            ["base", ld.base.display],
            ["quantization", mode],
            ["precision", f"{ld.precision} on {ld.system.device} ({ld.system.device_name})"],
            ["trainable parameters", f"{ld.trainable:,} of {ld.total:,} ({share:.3f}%)"],
            ["memory in use", f"{where} {used / GIB:.2f} GiB after the load"],
        ]
        if self.quantized_layers:
            layers = ", ".join(f"{n} {kind}" for kind, n in self.quantized_layers.items())
            rows.insert(2, ["quantized Linear layers", f"{layers} (bitsandbytes)"])
        return rows

    def preflight_rows(self) -> list[list[str]]:
        m = self.loaded.memory
        gc = "on" if m.gradient_checkpointing else "off"
        return [
            ["weights", _gib(m.weights), f"{m.params_total / 1e6:.1f}M parameters"],
            ["LoRA + gradients + optimizer", _gib(m.adapter_and_optimizer), ""],
            ["activations", _gib(m.activations), f"gradient checkpointing {gc}"],
            ["overhead", _gib(m.overhead), "framework, CUDA context"],
            ["total estimate", _gib(m.total), f"{m.ratio:.0%} of available"],
            ["available", _gib(m.available), f"free on the {self.loaded.system.device}"],
        ]

    def text(self) -> str:
        width = max(len(k) for k, _ in self.summary_rows())
        return "\n".join(
            [
                *(f"{k + ':':<{width + 1}} {v}" for k, v in self.summary_rows()),
                f"memory preflight: {self.loaded.memory.table()}",
                *self.loaded.memory.notes,
            ]
        )

    def page(self) -> str:
        return (
            html_table(["", ""], self.summary_rows())
            + "<p><b>Memory preflight</b> (estimate against the device's available memory)</p>"
            + html_table(["", "GiB", ""], self.preflight_rows())
            + "".join(pre(note) for note in self.loaded.memory.notes)
        )


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def quantized_linear_counts(model: Any, mode: str) -> dict[str, int]:
    """bitsandbytes Linear4bit / Linear8bitLt modules in the model (the frozen base layers)."""
    if mode == "none":
        return {}
    import bitsandbytes as bnb

    kinds = {"4-bit": bnb.nn.Linear4bit, "8-bit": bnb.nn.Linear8bitLt}
    return {k: sum(isinstance(m, cls) for m in model.modules()) for k, cls in kinds.items()}


def memory_in_use(device: str) -> tuple[str, int]:
    """CUDA memory allocated by tensors on a GPU; the process's resident memory on a CPU."""
    if device == "cuda":
        import torch

        return "CUDA allocated", torch.cuda.memory_allocated()
    import psutil

    return "process RSS", psutil.Process().memory_info().rss


def load_model(job: FineTuneJob, data: DatasetView) -> ModelView:
    """run_job's own start-up, load_all: checks, preflight, then the weights and LoRA.

    The hardware checks and the memory preflight run from the config before any weight is
    read (a model that does not fit stops here with recommendations); then the base is
    loaded, quantized when the job says so, and LoRA is attached. train() trains this very
    object: nothing is loaded twice.
    """
    from kubetune_trainer.engine.setup import load_all, offline_env

    offline_env(job)  # as run_job does before it loads
    loaded = load_all(job, data.prepared, _say)
    mode = job.spec.quantization.mode
    view = ModelView(
        job,
        loaded,
        quantized_linear_counts(loaded.model, mode),
        memory_in_use(loaded.system.device),
    )
    show(view.text(), view.page())
    return view


# -- training ------------------------------------------------------------------------------
def _say(message: str) -> None:
    # The job cell already shows the resolved spec run_job starts with: print its first line.
    first = message.partition("\n")[0]
    print(first if first.startswith("kubetune: ") and "resolved spec" in first else message)


def check_model_for(job: FineTuneJob, data: DatasetView, model: ModelView) -> None:
    """ValueError unless `model` was loaded for this job and data, and has not trained yet."""
    if model.trained:
        raise ValueError("this model has been trained already: run the model cell again first")
    if model.job.to_manifest() != job.to_manifest() or model.loaded.prepared is not data.prepared:
        raise ValueError("the model was loaded for another job or data: run the model cell again")


def train(
    job: FineTuneJob, data: DatasetView, model: ModelView, output: str, resume: bool = True
) -> Any:
    """`kubetune run` in this kernel: run_job on the model cell's loaded model, with a live
    bar and plot; returns its RunResult."""
    from kubetune_api.constants import Env
    from kubetune_trainer.engine.run import run_job

    check_model_for(job, data, model)
    model.trained = True
    progress = LiveProgress()
    with socket.socket() as s:  # a free port, so the follower knows where /metrics is
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    previous = os.environ.get(Env.METRICS_PORT)
    os.environ[Env.METRICS_PORT] = str(port)
    follower = MetricsFollower(port, job.metadata.name, progress)
    follower.start()
    try:
        result = run_job(
            job,
            output=output,
            resume=resume,
            prepared=data.prepared,
            say=_say,
            loaded=model.loaded,
        )
    finally:
        follower.stop.set()
        follower.join()
        if previous is None:
            os.environ.pop(Env.METRICS_PORT, None)
        else:
            os.environ[Env.METRICS_PORT] = previous
    progress.finish(read_metrics(result.run_uri, job.spec.output.s3_endpoint))
    print(
        f"live view: {progress.live_updates} updates followed from the run's /metrics while "
        "it ran; the final bar and plot are drawn from its metrics.jsonl"
    )
    return result


# -- adapter -------------------------------------------------------------------------------
@dataclass
class AdapterSummary:
    uri: str
    local_dir: Path
    files: list[tuple[str, int, str]]  # (name, bytes, sha256), read back from the store
    recorded_sha256: str  # what run_job wrote into adapter.json when it saved the weights
    uploaded_to: str | None = None

    def weights_ok(self) -> bool:
        from kubetune_trainer.engine.adapter import ADAPTER_WEIGHTS

        return any(n == ADAPTER_WEIGHTS and h == self.recorded_sha256 for n, _, h in self.files)

    def footer(self) -> str:
        ok = "matches" if self.weights_ok() else "DOES NOT match"
        s3 = f"uploaded to {self.uploaded_to}" if self.uploaded_to else "S3 upload: off"
        return f"weights sha256 {ok} adapter.json\n{s3}"

    def text(self) -> str:
        width = max(len(n) for n, _, _ in self.files)
        rows = [f"{n:<{width}}  {size:>12,}  {digest}" for n, size, digest in self.files]
        head = f"{'file':<{width}}  {'bytes':>12}  sha256"
        return "\n".join([f"adapter: {self.uri}", head, *rows, self.footer()])


def save(result: Any, s3_uri: str = "", endpoint_url: str | None = None) -> AdapterSummary:
    """The saved adapter's files, sizes and sha256 read back from where run_job put them
    (engine.adapter.read_back, the check run_job makes after its upload); with an s3:// URI
    also uploaded in the cluster's layout `<uri>/<namespace>/<name>/`."""
    from kubetune_trainer.engine.adapter import RECORD, read_back
    from kubetune_trainer.evaluation.models import localize_dir
    from kubetune_trainer.storage import open_store

    store = open_store(result.adapter.uri)
    files = read_back(store)
    recorded = json.loads(store.get_bytes(RECORD))["sha256"]
    local = localize_dir(result.adapter.uri)  # the files to upload elsewhere
    summary = AdapterSummary(result.adapter.uri, local, files, recorded)
    if s3_uri and summary.weights_ok():
        summary.uploaded_to = upload(result, summary, s3_uri, endpoint_url)
    table = html_table(["file", "bytes", "sha256"], [[n, f"{b:,}", h] for n, b, h in files])
    show(summary.text(), pre(f"adapter: {summary.uri}") + table + pre(summary.footer()))
    if not summary.weights_ok():  # stop the notebook: these weights are not the trained ones
        raise RuntimeError(f"{summary.uri}: adapter weights differ from adapter.json's sha256")
    return summary


def upload(
    result: Any, summary: AdapterSummary, s3_uri: str, endpoint_url: str | None = None
) -> str:
    """The engine's upload_adapter into `<s3_uri>/<ns>/<name>/adapter/` (adapter.json last)."""
    from kubetune_api.uris import run_prefix, scheme_of
    from kubetune_trainer.engine.adapter import upload_adapter
    from kubetune_trainer.storage import open_store

    if scheme_of(s3_uri) != "s3":
        raise ValueError(f"S3_URI must start with s3://, not {s3_uri!r}")
    job = result.report["job"]
    store = open_store(run_prefix(s3_uri, job["namespace"], job["name"]), endpoint_url)
    store.check_writable()
    files = {n: size for n, size, _ in summary.files if n != "adapter.json"}
    saved = upload_adapter(store, summary.local_dir, files)  # reads every file back
    if saved.sha256 != summary.recorded_sha256:
        raise RuntimeError(f"upload to {saved.uri}: the weights' sha256 differs")
    return saved.uri


# -- base vs tuned -------------------------------------------------------------------------
def comparison_text(evaluation: dict[str, Any]) -> str:
    base, tuned = evaluation["base"], evaluation["tuned"]
    gen = ", ".join(f"{k}={v}" for k, v in tuned["generation"].items())
    lines = [f"generation parameters: {gen}", ""]
    for k in _shared_metrics(evaluation):
        lines.append(
            f"{k:<22}base {base['metrics'][k]:>10.4f}   tuned {tuned['metrics'][k]:>10.4f}"
        )
    for i, (b, t) in enumerate(zip(base["examples"], tuned["examples"], strict=True), start=1):
        lines += [
            "",
            f"Q{i}: {b['prompt']}",
            f"  reference: {b['reference']}",
            f"  base answer:  {b['output'] or '(empty answer)'}",
            f"  tuned answer: {t['output'] or '(empty answer)'}",
        ]
    return "\n".join(lines)


def _shared_metrics(evaluation: dict[str, Any]) -> list[str]:
    keys = set(evaluation["base"]["metrics"]) & set(evaluation["tuned"]["metrics"])
    return sorted(keys - {"loss_tokens"})  # a count, the same for both


def compare(result: Any) -> dict[str, Any] | None:
    """Base (adapter off) vs tuned on held-out questions, as run_job evaluated them.

    run_job generates with the trained model still in memory (the base is the same model
    with the adapter disabled, 4-bit included), so nothing is loaded a second time here.
    """
    evaluation = (result.report or {}).get("evaluation")
    if not evaluation:
        msg = "no comparison: evaluation was off or there were no held-out (validation) records"
        show(msg)
        return None
    base, tuned = evaluation["base"], evaluation["tuned"]
    page = (
        "<p><b>Generation parameters</b> (the same for both models)</p>"
        + html_table(["parameter", "value"], list(map(list, tuned["generation"].items())))
        + "<p><b>Metrics on the held-out records</b></p>"
        + html_table(
            ["metric", "base", "tuned"],
            [[k, f"{base['metrics'][k]:.4f}", f"{tuned['metrics'][k]:.4f}"]
             for k in _shared_metrics(evaluation)],
        )
        + "<p><b>Answers to held-out questions</b></p>"
        + html_table(
            ["question", "reference", "base answer", "tuned answer"],
            [[b["prompt"], b["reference"], b["output"] or "(empty answer)",
              t["output"] or "(empty answer)"]
             for b, t in zip(base["examples"], tuned["examples"], strict=True)],
        )
    )  # fmt: skip
    show(comparison_text(evaluation), page)
    return evaluation
