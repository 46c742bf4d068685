"""The training cell's live view: a progress bar and a loss plot that update in place.

run_job has to stay on the kernel's main thread (it installs the SIGTERM handler), so a
follower thread polls the run's own /metrics endpoint (what the operator scrapes) and the
final plot is drawn from the run's complete report/metrics.jsonl.
"""

from __future__ import annotations

import html
import io
import json
import threading
import time
import urllib.request
from typing import Any

from .display import show, show_png


def loss_png(rows: list[dict[str, Any]], title: str = "loss") -> bytes:
    """Train and eval loss against step as PNG bytes (no pyplot: safe in a thread)."""
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig = Figure(figsize=(7, 3.5), dpi=90)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def progress_text(row: dict[str, Any]) -> str:
    parts = [f"step {row.get('step', 0)}/{row.get('total_steps', '?')}"]
    for key, label in (("loss", "loss"), ("eval_loss", "eval loss")):
        if row.get(key) is not None:
            parts.append(f"{label} {row[key]:.4f}")
    if row.get("eta_seconds") is not None:
        parts.append(f"ETA {int(row['eta_seconds'])} s")
    return "  ".join(parts)


class LiveProgress:
    """A progress bar and a loss plot updated in place (display ids: no widgets needed)."""

    def __init__(self, plot_every: float = 3.0) -> None:
        self.rows: list[dict[str, Any]] = []
        self.live_updates = 0  # redraws from rows followed while the run was going
        self.plot_every = plot_every  # seconds between redraws: a PNG costs CPU time
        self._plotted = 0.0
        self._lock = threading.Lock()
        self.bar = show("step 0/?  (loading)", self._bar_html({}))
        self.plot: Any = None

    @staticmethod
    def _bar_html(row: dict[str, Any]) -> str:
        step, total = row.get("step", 0), row.get("total_steps") or 1
        label = progress_text(row) if row else "loading the model"
        return (
            f"<progress value='{step}' max='{total}' style='width:60%'></progress> "
            f"<code>{html.escape(label)}</code>"
        )

    def update(self, row: dict[str, Any], final: bool = False) -> None:
        with self._lock:
            if not final:
                self.rows.append(row)
                self.live_updates += 1
            self.bar = show(progress_text(row), self._bar_html(row), self.bar)
            now = time.monotonic()
            if final or now - self._plotted >= self.plot_every:
                self._plotted = now
                self._draw("loss (metrics.jsonl)" if final else "loss (live)")

    def _draw(self, title: str) -> None:
        if any("loss" in r or "eval_loss" in r for r in self.rows):
            self.plot = show_png(loss_png(self.rows, title), self.plot)

    def finish(self, rows: list[dict[str, Any]]) -> None:
        """The run's complete rows (its metrics.jsonl) replace the sampled ones."""
        with self._lock:
            self.rows = list(rows)
        last: dict[str, Any] = {}
        for r in rows:  # the last train row, with the latest eval loss next to it
            last = {**last, **r} if "loss" not in r else {**r, "eval_loss": last.get("eval_loss")}
        self.update(last, final=True)


class MetricsFollower(threading.Thread):
    """Polls the run's own /metrics endpoint (what the operator scrapes) for LiveProgress.

    run_job has to stay on the main thread (it installs the SIGTERM handler), so the
    notebook follows it from here, through the trainer's public metrics, not its insides.
    """

    def __init__(self, port: int, job_name: str, progress: LiveProgress) -> None:
        super().__init__(daemon=True)
        from kubetune_trainer.reporting.prometheus import LABELS, METRICS

        self.url = f"http://127.0.0.1:{port}/metrics"
        self.job_name = job_name
        self.progress = progress
        self.fields = {m.name: m.row_field for m in METRICS if m.row_field}
        self.job_label = LABELS[1]  # the FineTuneJob's name (never `job`: Prometheus's own)
        self.stop = threading.Event()

    def scrape(self) -> dict[str, Any]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.url, timeout=2) as resp:
            text = resp.read().decode()
        row: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                name = self.fields.get(s.name)
                if name and s.labels.get(self.job_label) == self.job_name:
                    row[name] = int(s.value) if name in ("step", "total_steps") else s.value
        return row

    def run(self) -> None:
        last: tuple[Any, ...] = ()
        while not self.stop.wait(0.5):
            try:
                row = self.scrape()
            except OSError:  # not serving yet (loading) or closed already (finished)
                continue
            key = (row.get("step"), row.get("loss"), row.get("eval_loss"))
            if "step" in row and key != last:
                last = key
                self.progress.update(row)


def read_metrics(run_uri: str, endpoint_url: str | None = None) -> list[dict[str, Any]]:
    """Every logged row of a finished run (its report/metrics.jsonl)."""
    from kubetune_trainer.storage import open_store

    raw = open_store(run_uri, endpoint_url).get_bytes("report/metrics.jsonl")
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
