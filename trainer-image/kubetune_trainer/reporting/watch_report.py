"""report.md sections of the run's watchers (no torch): estimated vs actual training time
(engine/eta.py) and memory during training (engine/memwatch.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else str(timedelta(seconds=round(seconds)))


_fmt = fmt_seconds


def eta_lines(eta: dict[str, Any] | None) -> list[str]:
    """report.md's "Estimated vs actual training time" section."""
    if not eta:
        return []
    s = eta["start"]
    lines = [
        "## Estimated vs actual training time",
        "",
        f"- at start: {_fmt(s['seconds'])} for {s['steps']} steps ({s['source']})",
    ]
    if eta.get("refined"):
        r = eta["refined"]
        lines.append(
            f"- after warm-up (step {r['at_step']}): {_fmt(r['seconds_left'])} left; "
            f"the remaining steps took {_fmt(r['actual_seconds_left'])}"
        )
    err = eta.get("start_error")
    tail = f" (start estimate off by {err:+.0%})" if err is not None else ""
    steps = eta.get("steps_seconds")
    within = f", of which steps {_fmt(steps)}" if steps is not None else ""
    actual = f"- actual: {_fmt(eta['actual_seconds'])}{within} (evaluations and checkpoints too)"
    return [*lines, actual + tail, ""]


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def memory_lines(mem: dict[str, Any] | None) -> list[str]:
    """report.md's "Memory during training": each mark, the peak, reactions, savings."""
    if not mem:
        return []
    lines = ["## Memory during training", "", "| operation | step | used | limit | share |",
             "|---|---|---|---|---|"]  # fmt: skip
    for m in mem.get("marks") or []:
        step = "" if m.get("step") is None else m["step"]
        lines.append(f"| {m['op']} | {step} | {_gib(m['used'])} | {_gib(m['limit'])} | "
                     f"{m['ratio']:.0%} |")  # fmt: skip
    lines.append("")
    peak = mem.get("peak")
    if peak:
        lines.append(f"Peak sampled: {_gib(peak['used'])} of {_gib(peak['limit'])} "
                     f"({peak['ratio']:.0%}, {peak['source']}); warning threshold "
                     f"{mem['threshold']:.0%}, {mem.get('warnings', 0)} warning(s).")  # fmt: skip
    for r in mem.get("reactions") or []:
        lines.append(f"- reaction at step {r['step']}: {r['action']}")
    if mem.get("recommendation"):
        lines.append(f"- recommended for the next attempt: {mem['recommendation']}")
    saved = mem.get("savings_bytes") or {}
    if saved:
        lines += ["", "Bytes saved per rank by each technique (estimate, kubetune_api.memory):", ""]
        lines += [f"- {k.replace('_', ' ')}: {v:,} bytes ({_gib(v)})" for k, v in saved.items()]
    return [*lines, ""]


def sections(report: dict[str, Any]) -> list[str]:
    """Every watcher section of report.md, in order."""
    return eta_lines(report.get("eta")) + memory_lines(report.get("memory"))
