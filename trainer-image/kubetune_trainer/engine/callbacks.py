"""Trainer callbacks: commit checkpoints to the store, stop cleanly on SIGTERM, report rows.

Only the world process zero writes (checkpoints, metrics); every rank sees the same
stop/save decisions because the Trainer broadcasts `control` through its own loop.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import TrainerCallback

from kubetune_trainer.reporting.local import SinkFanout
from kubetune_trainer.reporting.sinks import LogRow

log = logging.getLogger(__name__)
STATE_FILE = "kubetune_state.json"  # what the engine adds to each checkpoint


class Preemption:
    """SIGTERM -> a flag; the training loop saves a checkpoint and stops at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        # Signal handlers belong to the main thread (a notebook may run us in another).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            log.warning("SIGTERM received: saving a checkpoint, then exiting with code 76")
        self.requested = True


class PreemptionCallback(TrainerCallback):
    def __init__(self, preemption: Preemption) -> None:
        self.preemption = preemption

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        from kubetune_trainer.distributed import any_rank

        # SIGTERM reaches ranks at slightly different steps; they must stop at the same one.
        # The flag only ever goes up: a SIGTERM handled while this rank waits in the
        # collective must not be overwritten by its answer (that lost the stop for good in
        # CI: both ranks logged the SIGTERM, then trained to the last step).
        if any_rank(self.preemption.requested):
            self.preemption.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control


class TrainingDone(Exception):
    """Raised by SkipIfTrained: the resumed checkpoint is at (or past) the planned last step."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"checkpoint step {step} >= planned {total} steps")
        self.step, self.total = step, total


class SkipIfTrained(TrainerCallback):
    """End train() before its first step when the resumed state already reached max_steps.

    The Trainer checks max_steps only after a step, so a run resumed from its final
    checkpoint (the attempt died after the last commit, before the adapter) would train
    one step more. At on_train_begin the checkpoint's weights, optimizer and state are
    loaded and state.max_steps is this run's plan; the engine catches TrainingDone and
    goes on to evaluation as if train() had returned.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise TrainingDone(state.global_step, state.max_steps)
        return control


class EpochSaveCallback(TrainerCallback):
    """With step-based saving, also checkpoint at the end of every epoch (once per step)."""

    def __init__(self) -> None:
        self.saved_step = -1

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.saved_step = state.global_step
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.global_step != self.saved_step:
            control.should_save = True
        return control


class CommitCallback(TrainerCallback):
    """Commit each checkpoint the Trainer saved locally, in the background, MANIFEST.json last.

    The Trainer stages `checkpoint-<step>/` in its output_dir; this adds the engine's
    state (data position, base eval loss, data fingerprint) and hands the folder to a
    BackgroundCommitter that uploads it to `<run>/checkpoints/step-<step>/` and keeps the
    newest N plus the best, while training goes on. Finished commits are reported on the
    training thread (sinks are not thread-safe); train end waits for the one in flight, so
    a SIGTERM-driven stop or the end of training leaves every saved checkpoint committed.
    """

    def __init__(
        self,
        ckpts: Any,
        staging: Path,
        keep_last: int,
        sinks: SinkFanout,
        extra_state: dict[str, Any],
        after: Callable[[], None] | None = None,
    ) -> None:
        from kubetune_trainer.storage.committer import BackgroundCommitter

        self.staging = staging
        self.sinks = sinks
        self.extra_state = extra_state
        # after: e.g. upload metrics.jsonl so a resumed run keeps its history (background too)
        self.committer = BackgroundCommitter(ckpts, keep_last, staging, after)
        self.last_uri: str | None = None
        self.last_step: int | None = None
        self.stalls: list[float] = []  # seconds the training thread spent per checkpoint

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        from kubetune_trainer.distributed import barrier, collect_node_files

        barrier()  # every rank has written its part (RNG state, ZeRO shards) before the commit
        folder = self.staging / f"checkpoint-{state.global_step}"
        collect_node_files(folder)  # other nodes' RNG states and ZeRO shards -> rank 0's folder
        if not state.is_world_process_zero:
            return control
        examples = (
            state.global_step
            * args.per_device_train_batch_size
            * (args.gradient_accumulation_steps * args.world_size)
        )
        position = {
            "global_step": state.global_step,
            "epoch": state.epoch,
            "examples_seen": examples,
        }
        (folder / STATE_FILE).write_text(
            json.dumps({**self.extra_state, "data_position": position}, indent=2)
        )
        protect: set[int | str] = {state.global_step}
        best = best_step(state)
        if best is not None:
            protect.add(best)
        self.stalls.append(self.committer.submit(folder, state.global_step, protect))
        self._report()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.is_world_process_zero:
            self._report()  # a finished commit shows at once; a failed one fails the job now
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.is_world_process_zero:
            self.committer.wait()
            self._report()
        return control

    def settle(self) -> None:
        """When the run ends another way (an exception): let the commit in flight finish while
        the interpreter is alive (at its shutdown, thread pools refuse new uploads), and log,
        not raise, what it raised: the original failure is the one to report."""
        try:
            self.committer.wait()
            self._report()
        except Exception as exc:
            log.warning("the checkpoint being committed when the run ended failed: %s", exc)

    def _report(self) -> None:
        self.committer.raise_failed()
        done = self.committer.drain()
        for c in done:
            self.last_uri, self.last_step = c.uri, c.step
            self.sinks.on_checkpoint(c.uri, c.step, c.seconds)
            log.info("committed %s in %.2fs (training stalled %.3fs)", c.uri, c.seconds, c.stall)


# Trainer speed counters logged with every evaluation: not a measure of the model.
_EVAL_COUNTERS = frozenset({"eval_loss", "eval_runtime", "eval_samples_per_second",
                            "eval_steps_per_second", "eval_model_preparation_time"})  # fmt: skip


def objective_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The objective's own figures in one Trainer log: numeric `eval_*` keys (ranking's
    eval_ordering_accuracy, TRL's eval_rewards/accuracies...) and `rewards/*` (TRL DPO's
    training rewards/accuracies, rewards/margins...), besides loss and timing."""
    out = {}
    for k, v in logs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if (k.startswith("eval_") and k not in _EVAL_COUNTERS) or k.startswith("rewards/"):
            out[k] = float(v)
    return out


class LogCallback(TrainerCallback):
    """Trainer logs -> LogRow (loss, lr, grad norm, real tokens/s, memory, ETA, the objective's
    metrics) -> sinks. `perplexity`: the eval loss is a token-level language-model loss, so
    exp(eval_loss) is logged as eval_perplexity (not for DPO/ranking/classification)."""

    def __init__(self, sinks: SinkFanout, perplexity: bool = True) -> None:
        self.sinks = sinks
        self.perplexity = perplexity
        self.history: list[dict[str, Any]] = []
        # An eval row at this step is not sent again (a re-run that skipped training
        # evaluates the final checkpoint whose eval row the restored metrics already hold).
        self.mute_eval_at: int | None = None
        self._t0 = self._tokens0 = self._step0 = None  # type: Any

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self._t0, self._tokens0 = time.monotonic(), state.num_input_tokens_seen
        self._step0 = state.global_step
        self._last = (self._t0, self._tokens0)
        if state.is_world_process_zero:
            self.sinks.on_train_begin(state.global_step, state.max_steps)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.is_world_process_zero:
            self.sinks.on_step(state.global_step)
        return control

    def _memory(self) -> dict[str, int]:
        mem = {"rss": psutil.Process().memory_info().rss}
        if torch.cuda.is_available():
            mem["gpu_allocated"] = torch.cuda.memory_allocated()
            mem["gpu_peak"] = torch.cuda.max_memory_allocated()
        return mem

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
        logs = dict(logs or {})
        if not state.is_world_process_zero or not ({"loss", "eval_loss"} & logs.keys()):
            return control
        if "loss" not in logs and state.global_step == self.mute_eval_at:
            return control
        now, tokens = time.monotonic(), state.num_input_tokens_seen
        row = LogRow(
            step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0)
        )
        if tokens is not None and self._tokens0 is not None:
            row.tokens_seen = max(int(tokens - self._tokens0), 0)
        if "loss" in logs:
            row.loss = float(logs["loss"])
            row.learning_rate = _num(logs.get("learning_rate"))
            row.grad_norm = _num(logs.get("grad_norm"))
            last_t, last_tok = self._last
            if now > last_t and tokens > last_tok:
                row.tokens_per_second = (tokens - last_tok) / (now - last_t)
            self._last = (now, tokens)
            done = state.global_step - (self._step0 or 0)
            if done > 0 and self._t0 is not None:
                row.eta_seconds = (now - self._t0) / done * (state.max_steps - state.global_step)
        if "eval_loss" in logs:
            row.eval_loss = float(logs["eval_loss"])
            if self.perplexity:
                row.extra["eval_perplexity"] = _ppl(row.eval_loss)
        row.extra.update(objective_metrics(logs))
        row.memory_bytes = self._memory()
        self.history.append(row.as_dict())
        self.sinks.on_log(row)
        return control


def best_step(state: Any) -> int | None:
    """The step of the best checkpoint by eval loss, or None.

    The Trainer records the best eval's step (best_global_step, kept in trainer_state.json
    across a resume) and, when a checkpoint was saved at that step, its staging folder
    (best_model_checkpoint, forgotten by a resumed attempt whose staging folder is new).
    """
    if state.best_model_checkpoint:
        name = Path(state.best_model_checkpoint).name.removeprefix("checkpoint-")
        if name.isdigit():
            return int(name)
    return getattr(state, "best_global_step", None) or None


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


class SelectionMetricCallback(TrainerCallback):
    """Adds evaluation.selectBy (rougeL, bleu or a domain metric) to every evaluation.

    It runs in on_log, before LogCallback (it must come first in the list): the Trainer
    logs an evaluation's metrics dict before it picks the best checkpoint from that same
    dict, so the metric added here is recorded (metrics.jsonl, log history) and is what
    metric_for_best_model and early stopping read.
    """

    def __init__(self, job: Any, tokenizer: Any, fmt: str, records: list[dict[str, Any]]) -> None:
        self.job, self.tokenizer, self.fmt, self.records = job, tokenizer, fmt, records
        self.name = job.spec.evaluation.select_by

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
        from kubetune_trainer.evaluation.selection import measure, metric_key

        if logs is None or "eval_loss" not in logs or kw.get("model") is None:
            return control
        key = metric_key(self.name)
        logs[key] = measure(self.name, kw["model"], self.tokenizer, self.job, self.fmt,
                            self.records)  # fmt: skip
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1][key] = logs[key]  # saved with the checkpoint's state
        return control


class SelectionEarlyStopping(TrainerCallback):
    """Stop when evaluation.selectBy has not improved (by more than minDelta) for
    `patience` evaluations, or for `patience` epochs since the best evaluation.

    Judged from the Trainer's log history (restored with a checkpoint), so a resumed run
    counts the evaluations and epochs of the attempts before it.
    """

    def __init__(self, key: str, greater: bool, patience: int, min_delta: float,
                 unit: str) -> None:  # fmt: skip
        self.key, self.greater, self.patience = key, greater, patience
        self.min_delta, self.unit = min_delta, unit

    def _better(self, value: float, best: float) -> bool:
        return value > best + self.min_delta if self.greater else value < best - self.min_delta

    def since_best(self, history: list[dict[str, Any]]) -> tuple[int, float]:
        """(evaluations, epochs) since the best evaluation in `history`."""
        rows: dict[int, dict[str, Any]] = {}
        for r in history:  # one row per step: the last evaluation at that step
            if self.key in r and "loss" not in r:
                rows[int(r.get("step", 0))] = r
        evals = [rows[s] for s in sorted(rows)]
        if not evals:
            return 0, 0.0
        best_i = 0
        for i, r in enumerate(evals[1:], start=1):
            if self._better(float(r[self.key]), float(evals[best_i][self.key])):
                best_i = i
        epochs = float(evals[-1].get("epoch") or 0.0) - float(evals[best_i].get("epoch") or 0.0)
        return len(evals) - 1 - best_i, epochs

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        evals, epochs = self.since_best(state.log_history)
        by_evals = self.unit == "evaluations"
        if evals >= self.patience if by_evals else epochs >= self.patience - 1e-6:
            waited = f"{evals} evaluations" if by_evals else f"{epochs:g} epochs"
            log.warning(
                "early stopping at step %d: %s has not improved for %s",
                state.global_step, self.key, waited,
            )  # fmt: skip
            control.should_training_stop = True
        return control


def selection_callbacks(job: Any, tokenizer: Any, prepared: Any) -> list[Any]:
    """The callbacks evaluation.selectBy and training.earlyStopping need (put them before
    LogCallback)."""
    from kubetune_trainer.evaluation.selection import check_select_by, greater_is_better, metric_key

    name = job.spec.evaluation.select_by
    check_select_by(job, prepared.kind, prepared.format, prepared.validation)
    out: list[Any] = []
    if name != "eval_loss" and prepared.validation:
        out.append(SelectionMetricCallback(job, tokenizer, prepared.format, prepared.validation))
    es = job.spec.training.early_stopping
    if es is not None:
        out.append(SelectionEarlyStopping(metric_key(name), greater_is_better(name), es.patience,
                                          es.min_delta, es.patience_unit))  # fmt: skip
    return out
