"""The sinks a run reports to, built in one place (`sinks_for`): metrics.jsonl, the console,
Prometheus (always, rank 0) and MLflow (when spec.tracking.mlflowUri is set, rank 0).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob

from . import missing_extra, prometheus, tracking
from .sinks import LogRow, RunInfo, Sink

log = logging.getLogger(__name__)


class JsonlSink:
    """Every logged row as one JSON line (report/metrics.jsonl)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        pass

    def on_log(self, row: LogRow) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row.as_dict(), sort_keys=True) + "\n")

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        pass

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        pass


# Of a row's extra metrics, the console shows the objective's headline figures (all of
# them are in metrics.jsonl and MLflow): perplexity, accuracies and reward margins.
_CONSOLE_EXTRAS = ("perplexity", "accuracy", "accuracies", "margins")


def _console_extras(row: LogRow) -> list[str]:
    return [
        f"{k} {v:.4f}"
        for k, v in row.extra.items()
        if v is not None and k.rsplit("/", 1)[-1].rsplit("_", 1)[-1] in _CONSOLE_EXTRAS
    ]


def _fmt_row(row: LogRow) -> str:
    parts = [f"step {row.step}/{row.total_steps}", f"epoch {row.epoch:.2f}"]
    if row.loss is not None:
        parts.append(f"loss {row.loss:.4f}")
    if row.eval_loss is not None:
        parts.append(f"eval_loss {row.eval_loss:.4f}")
    parts += _console_extras(row)
    if row.learning_rate is not None:
        parts.append(f"lr {row.learning_rate:.2e}")
    if row.grad_norm is not None:
        parts.append(f"grad_norm {row.grad_norm:.3f}")
    if row.tokens_per_second is not None:
        parts.append(f"tokens/s {row.tokens_per_second:,.0f}")
    if "rss" in row.memory_bytes:
        parts.append(f"mem {row.memory_bytes['rss'] / 1024**3:.2f} GiB")
    if row.eta_seconds is not None:
        parts.append(f"eta {timedelta(seconds=int(row.eta_seconds))}")
    return "  ".join(parts)


def _postfix(row: LogRow | None, eval_loss: float | None = None) -> str:
    """The bar's tail: the engine's own ETA, the last train row's loss, lr and tokens/s,
    and the latest eval loss."""
    eta = row.eta_seconds if row is not None else None
    parts = [f"eta {timedelta(seconds=int(eta))}" if eta is not None else "eta ?"]
    if row is not None and row.loss is not None:
        parts.append(f"loss {row.loss:.4f}")
    if eval_loss is not None:
        parts.append(f"eval_loss {eval_loss:.4f}")
    if row is None:
        return ", ".join(parts)
    if row.learning_rate is not None:
        parts.append(f"lr {row.learning_rate:.2e}")
    if row.tokens_per_second is not None:
        parts.append(f"tokens/s {row.tokens_per_second:,.0f}")
    return ", ".join(parts)


class ConsoleSink:
    """A tqdm bar in a terminal; plain log lines otherwise (pods, CI, pipes).

    In a terminal the bar starts at train begin (at the resumed step), moves every step and
    shows the engine's ETA, loss, learning rate and tokens/s; eval rows and checkpoint
    lines are printed above it (tqdm.write). Elsewhere every row is one plain line.
    """

    BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, rank: int = 0, stream: Any = None, redraw_seconds: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.enabled = rank == 0
        self.redraw_seconds = redraw_seconds  # the bar redraws at most this often
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: Any = None
        self._train_row: LogRow | None = None
        self._eval_loss: float | None = None

    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        pass

    def on_train_begin(self, step: int, total_steps: int) -> None:
        if not (self.enabled and self.tty) or self.bar is not None:
            return
        try:
            from tqdm import tqdm
        except ImportError as e:
            raise missing_extra("tqdm", "the console progress bar") from e

        self.bar = tqdm(
            total=total_steps,
            initial=step,
            file=self.stream,
            unit="step",
            dynamic_ncols=True,
            mininterval=self.redraw_seconds,
            bar_format=self.BAR_FORMAT,
            postfix=_postfix(None),
        )

    def on_step(self, step: int) -> None:
        if self.bar is not None and step > self.bar.n:
            self.bar.update(step - self.bar.n)

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def on_log(self, row: LogRow) -> None:
        if not self.enabled:
            return
        if self.bar is None:  # no terminal (or no train begin yet): every row as a line
            self._write(_fmt_row(row))
            return
        self.on_step(row.step)
        if row.loss is not None:
            self._train_row = row
        if row.eval_loss is not None:  # an eval row: printed above the bar, kept in its tail
            self._write(_fmt_row(row))
            self._eval_loss = row.eval_loss
        self.bar.set_postfix_str(_postfix(self._train_row, self._eval_loss))

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        if self.enabled:
            self._write(f"checkpoint step {step} committed to {uri} ({seconds:.1f} s)")

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def sinks_for(job: FineTuneJob, run: RunInfo, report_dir: Path) -> list[Sink]:
    """Every sink of this run: metrics.jsonl and the console always; Prometheus and MLflow
    on rank 0 (MLflow only when configured). Each backend's `sink_for` says None when it
    has nothing to do here."""
    sinks: list[Sink] = [JsonlSink(report_dir / "metrics.jsonl"), ConsoleSink(run.rank)]
    for sink in (prometheus.sink_for(job, run), tracking.sink_for(job, run)):
        if sink is not None:
            sinks.append(sink)
    return sinks


class SinkFanout:
    """Calls every sink; a sink failing never stops training (it is logged once)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._failed: set[int] = set()

    def _each(self, method: str, *args: Any, optional: bool = False) -> None:
        for i, s in enumerate(self.sinks):
            if optional and not hasattr(s, method):
                continue
            try:
                getattr(s, method)(*args)
            except Exception as exc:  # a dashboard outage must not end a training run
                if i not in self._failed:
                    log.warning("sink %s.%s failed: %s", type(s).__name__, method, exc)
                    self._failed.add(i)

    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        self._each("on_start", run, params)

    def on_log(self, row: LogRow) -> None:
        self._each("on_log", row)

    def on_train_begin(self, step: int, total_steps: int) -> None:
        """Optional hook (the console bar): only sinks that define it are called."""
        self._each("on_train_begin", step, total_steps, optional=True)

    def on_step(self, step: int) -> None:
        """Optional hook, every optimizer step (the console bar)."""
        self._each("on_step", step, optional=True)

    def on_gauges(self, row: LogRow) -> None:
        """Optional hook: a row for live gauges only (the ETA, memory at each operation);
        metrics.jsonl, MLflow and the console keep one row per logging step."""
        self._each("on_gauges", row, optional=True)

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        self._each("on_checkpoint", uri, step, seconds)

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        self._each("on_end", summary, artifacts_dir)

    def close(self) -> None:
        """Flush what sinks queue in the background; a preempted or failed attempt's last
        rows would otherwise die with the process (the next attempt resumes after them)."""
        for i, s in enumerate(self.sinks):
            if hasattr(s, "close") and i not in self._failed:
                try:
                    s.close()
                except Exception as exc:
                    log.warning("sink %s.close failed: %s", type(s).__name__, exc)
