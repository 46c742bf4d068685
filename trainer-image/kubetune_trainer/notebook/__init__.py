"""Thin helpers behind examples/notebooks/medical_qlora.ipynb: one call per notebook cell.

Each helper calls the functions `kubetune run` calls (hardware.system_report, prepare,
loader.resolve_base, engine.setup.load_all, engine.run.run_job, the run's adapter record
and report) and only adds what a notebook needs on top: a display, a live progress bar and
a loss plot. Nothing here trains, evaluates or saves differently from the CLI.

Importing this package imports neither torch nor IPython; outside a notebook every display
falls back to printing its plain text.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from kubetune_api.spec import FineTuneJob

from .display import say
from .inputs import (
    DatasetView,
    dataset,
    environment,
    environment_text,
    quantization_for,
    quantization_spec,
)
from .live import LiveProgress, MetricsFollower, read_metrics
from .model import ModelView, load_model, memory_in_use, quantized_linear_counts
from .results import AdapterSummary, compare, comparison_text, save, upload

__all__ = [
    "AdapterSummary",
    "DatasetView",
    "ModelView",
    "check_model_for",
    "compare",
    "comparison_text",
    "dataset",
    "environment",
    "environment_text",
    "load_model",
    "memory_in_use",
    "quantization_for",
    "quantization_spec",
    "quantized_linear_counts",
    "save",
    "train",
    "upload",
]


# -- training ------------------------------------------------------------------------------
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
            say=say,
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
