"""report.json, report.md and the loss curve PNG of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob

from .watch_report import sections as watch_sections


def curve_series(
    history: list[dict[str, Any]],
    base_eval_loss: float | None = None,
    tuned_eval_loss: float | None = None,
    final_step: int | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """The loss curve's data: {"train loss": [(step, loss)...], "eval loss": [...]}.

    The eval series starts at step 0 with the base's eval loss (before the first step the
    LoRA update is zero: the model is the base) and ends with the tuned eval loss at the
    final step when no eval was logged there, so a run too short for an interval eval
    still shows train and eval loss.
    """
    train = {int(r["step"]): float(r["loss"]) for r in history if "loss" in r}
    evals = {int(r["step"]): float(r["eval_loss"]) for r in history if "eval_loss" in r}
    if base_eval_loss is not None:
        evals.setdefault(0, float(base_eval_loss))
    if tuned_eval_loss is not None and final_step is not None:
        evals.setdefault(final_step, float(tuned_eval_loss))
    series = {"train loss": sorted(train.items()), "eval loss": sorted(evals.items())}
    return {k: v for k, v in series.items() if v}


def curve_figure(series: dict[str, list[tuple[int, float]]]) -> Any:
    """A matplotlib Figure of `curve_series`, a marker on every point (a one-point series
    stays visible). No pyplot: no global state, safe in any thread."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    styles = {"train loss": ".-", "eval loss": "o-"}
    for label, points in series.items():
        ax.plot(*zip(*points, strict=True), styles.get(label, "o-"), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    return fig


def loss_curve(series: dict[str, list[tuple[int, float]]], path: Path) -> bool:
    """Write the loss curve PNG; False when there is nothing to plot."""
    if not series:
        return False
    curve_figure(series).savefig(path)
    return True


def _f(v: Any, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def stop_reason(state: Any, job: FineTuneJob) -> str:
    """Why training ended (from the Trainer's state): early stopping with the eval losses
    it judged, training.maxSteps, or training.epochs."""
    t = job.spec.training
    step, planned = int(state.global_step), int(state.max_steps or 0)
    es = t.early_stopping
    if es is not None and step < planned:
        evals = [r for r in state.log_history if "eval_loss" in r]
        seen = ", ".join(
            f"{r['eval_loss']:.4f} (step {r['step']})" for r in evals[-es.patience - 1 :]
        )
        return (
            f"early stopping at step {step} of {planned}: eval_loss did not improve on the best "
            f"{_f(state.best_metric)} by minDelta {es.min_delta} for {es.patience} evaluations "
            f"(patience); last evaluations: {seen}"
        )
    if t.max_steps and step >= t.max_steps:
        return f"reached training.maxSteps {t.max_steps}"
    return f"completed training.epochs {t.epochs} ({step} steps)"


# report.json's results, grouped for report.md (keys not named here go under "Other").
_GROUPS = {
    "Training": ("steps", "planned_steps", "epochs_done", "stop_reason", "final_train_loss",
                 "mean_train_loss", "tokens_per_second", "best_checkpoint", "precision"),
    "Data": ("train_examples", "eval_examples", "data_fingerprint"),
    "Eval loss (Trainer)": ("base_eval_loss", "tuned_eval_loss", "base_perplexity",
                            "tuned_perplexity"),
}  # fmt: skip
EVAL_LOSS_NOTE = (
    "Two eval losses can appear. **eval loss (Trainer)** is the training Trainer's evaluation "
    "of the whole validation split with the training collator: the base before training "
    "(adapter off), the tuned model at the last step (or the best checkpoint when it is "
    "loaded at the end); it is the mean over batches of each batch's loss. **loss** under "
    "*Evaluation* is the post-training evaluation's: the mean over every target token of the "
    "validation split, computed again outside the Trainer. Batches of unequal token counts "
    "make the two differ slightly; for DPO and ranking the Trainer's is the objective's loss."
)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return format(v, ".6g")
    return "n/a" if v is None else str(v)


def _results_sections(res: dict[str, Any]) -> list[str]:
    """Every key of report.json's results, grouped."""
    lines: list[str] = ["## All results", ""]
    named = {k for keys in _GROUPS.values() for k in keys}
    groups = {title: [k for k in keys if k in res] for title, keys in _GROUPS.items()}
    groups["Objective metrics"] = sorted(
        k
        for k in res
        if k not in named and (k.startswith(("eval_", "base_", "tuned_", "rewards/")))
    )
    groups["Other"] = sorted(
        k for k in res if k not in named and k not in groups["Objective metrics"]
    )
    for title, keys in groups.items():
        if keys:
            lines += [f"### {title}", "", *[f"- {k}: {_value(res[k])}" for k in keys], ""]
    return lines


def markdown(report: dict[str, Any]) -> str:
    r = report
    res = r.get("results", {})
    hp = r.get("hyperparameters", {})
    note = (r.get("data") or {}).get("validation_note")
    # Perplexity only for language-model losses; the held-out accuracy of preference data.
    cols = [("eval loss", "eval_loss", ".4f")]
    if "tuned_perplexity" in res:
        cols.append(("perplexity", "perplexity", ".2f"))
    for name in ("preference_accuracy", "ordering_accuracy"):
        if f"tuned_{name}" in res:
            cols.append((name.replace("_", " "), name, ".3f"))

    def cells(who: str) -> str:
        return " | ".join(_f(res.get(f"{who}_{key}"), fmt) for _, key, fmt in cols)

    if note:  # too few validation examples: no "tuned beats base", and why
        comparison = [f"**No base/tuned comparison:** {note}."]
    else:
        comparison = [
            "| | " + " | ".join(title for title, _, _ in cols) + " |",
            "|---" * (len(cols) + 1) + "|",
            f"| base (adapter off) | {cells('base')} |",
            f"| tuned | {cells('tuned')} |",
        ]
    if res.get("final_train_loss") is not None:
        train_loss = f"Final train loss {_f(res.get('final_train_loss'))}"
    elif res.get("mean_train_loss") is not None:  # no loss row: loggingSteps > steps
        train_loss = (
            f"Final train loss not logged (training.loggingSteps {hp.get('logging_steps')} > "
            f"{res.get('steps')} steps); mean train loss over the run "
            f"{_f(res.get('mean_train_loss'))}"
        )
    else:
        train_loss = "Final train loss n/a"
    lines = [
        f"# kubetune run {r['job']['namespace']}/{r['job']['name']}",
        "",
        f"Status: **{r['status']}** after {_f(r.get('training_seconds'), '.1f')} s of training "
        f"({res.get('steps')} steps, {res.get('epochs_done')} epochs).",
        "",
        *([f"Stopped: {res['stop_reason']}.", ""] if res.get("stop_reason") else []),
        *comparison,
        "",
        f"{train_loss}; tokens/s {_f(res.get('tokens_per_second'), ',.0f')}.",
        "",
        *_results_sections(res),
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
        *watch_sections(r),  # ETA vs actual, memory (watch_report.py)
    ]
    if r.get("adapter"):
        a = r["adapter"]
        lines += ["## Adapter", "", f"{a['uri']} (sha256 {a['sha256']}, {a['size']:,} bytes)", ""]
    ev = r.get("evaluation") or {}
    if ev.get("base") and ev.get("tuned"):  # every metric the evaluation measured
        from kubetune_trainer.evaluation.report import metrics_table

        lines += ["## Evaluation (post-training, base vs tuned)", "",
                  metrics_table([ev["base"], ev["tuned"]], ["base", "tuned"]), ""]  # fmt: skip
    if ev.get("summary"):  # the evaluation package's base-vs-tuned side by side
        lines += ["## Examples (base vs tuned)", "", "```", ev["summary"].rstrip(), "```", ""]
    if res.get("base_eval_loss") is not None or ev.get("base"):
        lines += ["## Which eval loss is which", "", EVAL_LOSS_NOTE, ""]
    if Path(r.get("loss_curve") or "").name:
        lines += ["", "![loss curve](loss_curve.png)", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], history: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write the three report files into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    png = out / "loss_curve.png"
    res = report.get("results", {})
    series = curve_series(
        history, res.get("base_eval_loss"), res.get("tuned_eval_loss"), res.get("steps")
    )
    if loss_curve(series, png):
        report["loss_curve"] = png.name
        written.append(png)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    written += [out / "report.json", out / "report.md"]
    return written
