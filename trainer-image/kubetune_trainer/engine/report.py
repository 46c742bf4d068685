"""report.json, report.md and the loss curve PNG of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob


def objective_options(job: FineTuneJob) -> dict[str, Any]:
    """The objective's own hyperparameters (spec.training.dpo / .ranking), flat: in
    report.json's hyperparameters and the registry record's."""
    spec = job.spec
    if spec.objective == "dpo":
        from kubetune_trainer.recipes.dpo import ROBUST_LABEL_SMOOTHING

        o = spec.training.dpo
        out: dict[str, Any] = {"dpo_beta": o.beta, "dpo_loss_type": o.loss_type}
        if o.loss_type == "robust":  # the flip rate the recipe passes to TRL
            out["dpo_label_smoothing"] = ROBUST_LABEL_SMOOTHING
        return out
    if spec.objective == "ranking":
        return {"ranking_margin": spec.training.ranking.margin}
    return {}


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


def markdown(report: dict[str, Any]) -> str:
    r = report
    res = r.get("results", {})
    hp = r.get("hyperparameters", {})
    # Perplexity only for language-model losses; the held-out accuracy of preference data.
    cols = [("eval loss", "eval_loss", ".4f")]
    if "tuned_perplexity" in res:
        cols.append(("perplexity", "perplexity", ".2f"))
    for name in ("preference_accuracy", "ordering_accuracy"):
        if f"tuned_{name}" in res:
            cols.append((name.replace("_", " "), name, ".3f"))

    def cells(who: str) -> str:
        return " | ".join(_f(res.get(f"{who}_{key}"), fmt) for _, key, fmt in cols)

    lines = [
        f"# kubetune run {r['job']['namespace']}/{r['job']['name']}",
        "",
        f"Status: **{r['status']}** after {_f(r.get('training_seconds'), '.1f')} s of training "
        f"({res.get('steps')} steps, {res.get('epochs_done')} epochs).",
        "",
        "| | " + " | ".join(title for title, _, _ in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
        f"| base (adapter off) | {cells('base')} |",
        f"| tuned | {cells('tuned')} |",
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
