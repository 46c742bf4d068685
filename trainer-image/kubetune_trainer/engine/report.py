"""report.json, report.md and the loss curve PNG of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def loss_curve(history: list[dict[str, Any]], path: Path) -> bool:
    """Train and eval loss against step; False when there is nothing to plot."""
    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in history if "eval_loss" in r]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display in pods or CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _f(v: Any, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def markdown(report: dict[str, Any]) -> str:
    r = report
    res = r.get("results", {})
    hp = r.get("hyperparameters", {})
    lines = [
        f"# kubetune run {r['job']['namespace']}/{r['job']['name']}",
        "",
        f"Status: **{r['status']}** after {_f(r.get('training_seconds'), '.1f')} s of training "
        f"({res.get('steps')} steps, {res.get('epochs_done')} epochs).",
        "",
        "| | eval loss | perplexity |",
        "|---|---|---|",
        f"| base (adapter off) | {_f(res.get('base_eval_loss'))} | "
        f"{_f(res.get('base_perplexity'), '.2f')} |",
        f"| tuned | {_f(res.get('tuned_eval_loss'))} | {_f(res.get('tuned_perplexity'), '.2f')} |",
        "",
        f"Final train loss {_f(res.get('final_train_loss'))}; "
        f"tokens/s {_f(res.get('tokens_per_second'), ',.0f')}.",
        "",
        "## Hyperparameters",
        "",
        *[f"- {k}: {v}" for k, v in hp.items()],
        "",
        "## System",
        "",
        r.get("system_summary", ""),
        "",
        "## Memory preflight",
        "",
        r.get("preflight_summary", ""),
        "",
    ]
    if r.get("adapter"):
        a = r["adapter"]
        lines += ["## Adapter", "", f"{a['uri']} (sha256 {a['sha256']}, {a['size']:,} bytes)", ""]
    ev = r.get("evaluation") or {}
    if ev.get("summary"):  # the evaluation package's base-vs-tuned side by side
        lines += ["## Evaluation (base vs tuned)", "", "```", ev["summary"].rstrip(), "```"]
    if Path(r.get("loss_curve") or "").name:
        lines += ["", "![loss curve](loss_curve.png)", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], history: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write the three report files into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    png = out / "loss_curve.png"
    if loss_curve(history, png):
        report["loss_curve"] = png.name
        written.append(png)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    written += [out / "report.json", out / "report.md"]
    return written
