"""The sinks a run reports to, built in one place: metrics.jsonl, the console, and the
Prometheus/MLflow sinks of kubetune_trainer.tracking/metrics when installed and configured.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.sinks import LogRow, RunInfo, Sink

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


def _fmt_row(row: LogRow) -> str:
    parts = [f"step {row.step}/{row.total_steps}", f"epoch {row.epoch:.2f}"]
    if row.loss is not None:
        parts.append(f"loss {row.loss:.4f}")
    if row.eval_loss is not None:
        parts.append(f"eval_loss {row.eval_loss:.4f}")
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


class ConsoleSink:
    """A tqdm bar with ETA in a terminal; plain log lines otherwise (pods, CI, pipes)."""

    def __init__(self, rank: int = 0, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = rank == 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: Any = None

    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        pass

    def on_log(self, row: LogRow) -> None:
        if not self.enabled:
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=row.total_steps, file=self.stream, unit="step")
            self.bar.update(row.step - self.bar.n)
            post = {"loss": row.loss, "eval": row.eval_loss}
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in post.items() if v is not None})
        else:
            print(_fmt_row(row), file=self.stream, flush=True)

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        if self.enabled and not self.tty:
            print(
                f"checkpoint step {step} committed to {uri} ({seconds:.1f} s)",
                file=self.stream,
                flush=True,
            )

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        if self.bar is not None:
            self.bar.close()


# Optional sinks from the storage/metrics helpers: (module, factory) pairs, each factory
# called as factory(job, run) and returning a Sink or None when not configured.
_OPTIONAL = (
    ("kubetune_trainer.metrics", "sink_for"),
    ("kubetune_trainer.tracking", "sink_for"),
)


def sinks_for(job: FineTuneJob, run: RunInfo, report_dir: Path) -> list[Sink]:
    """Every sink of this run: metrics.jsonl and console always, Prometheus/MLflow if set."""
    sinks: list[Sink] = [JsonlSink(report_dir / "metrics.jsonl"), ConsoleSink(run.rank)]
    for module, factory in _OPTIONAL:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        make = getattr(mod, factory, None)
        if make is None:
            continue
        sink = make(job, run)
        if sink is not None:
            sinks.append(sink)
    return sinks


class SinkFanout:
    """Calls every sink; a sink failing never stops training (it is logged once)."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._failed: set[int] = set()

    def _each(self, method: str, *args: Any) -> None:
        for i, s in enumerate(self.sinks):
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
