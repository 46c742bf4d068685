"""Render evaluation results: a metrics table (Markdown, readable in a terminal too),
and the A-vs-B comparison as Markdown and as one self-contained, escaped HTML page."""

from __future__ import annotations

import html
from typing import Any

EvalResult = dict[str, Any]
# Metrics where a smaller value is better (the rest: larger is better).
LOWER_IS_BETTER = {"loss", "perplexity", "brier_score", "unsupported_number_rate"}
# Counts shown as integers, never judged better/worse.
COUNTS = {"loss_tokens", "placeholder_examples", "direction_examples", "confidence_examples",
          "ordered_pairs"}  # fmt: skip


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) >= 1000 else f"{v:.4g}"
    return "n/a" if v is None else str(v)  # n/a: measured over zero examples


def metric_names(results: list[EvalResult]) -> list[str]:
    names: list[str] = []
    for r in results:
        names += [k for k in r["metrics"] if k not in names]
    return names


def metrics_table(results: list[EvalResult], labels: list[str] | None = None) -> str:
    """One column per result, one row per metric; a last column marks the better one."""
    labels = labels or [r["model"] for r in results]
    head = "| metric | " + " | ".join(labels) + (" | better |" if len(results) == 2 else " |")
    sep = "|---" * (len(results) + 1 + (len(results) == 2)) + "|"
    rows = [head, sep]
    for name in metric_names(results):
        vals = [r["metrics"].get(name) for r in results]
        cells = [_fmt(v) for v in vals]
        if len(results) == 2:
            cells.append(_better(name, vals[0], vals[1], labels))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _better(name: str, a: Any, b: Any, labels: list[str]) -> str:
    if name in COUNTS or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return ""
    if a == b:
        return "="
    a_wins = a < b if name in LOWER_IS_BETTER else a > b
    return labels[0] if a_wins else labels[1]


def _md_cell(text: str) -> str:
    # A table cell holds one line; pipes would end the cell.
    return html.escape(text).replace("|", "\\|").replace("\n", "<br>")


def comparison_markdown(cmp: dict[str, Any]) -> str:
    a, b = cmp["a"], cmp["b"]
    la, lb = cmp["labels"]
    lines = [
        f"# {la} vs {lb}",
        "",
        f"- A: `{a['model']}`",
        f"- B: `{b['model']}`",
        f"- format: {a['format']}; generation: {cmp['generation']}",
        "",
        "## Metrics",
        "",
        metrics_table([a, b], [la, lb]),
        "",
        "## Examples",
        "",
        f"| # | query | {la} | {lb} |",
        "|---|---|---|---|",
    ]
    for i, ex in enumerate(cmp["examples"], start=1):
        cells = [ex["prompt"], ex["a"], ex["b"]]
        lines.append(f"| {i} | " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}
table{border-collapse:collapse;margin:1rem 0;width:100%}
td,th{border:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left}
th{background:#f3f3f3} pre{white-space:pre-wrap;margin:0;font-size:.9em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def comparison_html(cmp: dict[str, Any]) -> str:
    """A standalone page (inline CSS, no scripts); every model or user text is escaped."""
    a, b = cmp["a"], cmp["b"]
    la, lb = cmp["labels"]
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(la)} vs {e(lb)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(la)} vs {e(lb)}</h1>",
        f"<p>A: <code>{e(a['model'])}</code><br>B: <code>{e(b['model'])}</code><br>",
        f"format: {e(a['format'])}; generation: {e(str(cmp['generation']))}</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th>",
        f"<th>{e(la)}</th><th>{e(lb)}</th><th>better</th></tr>",
    ]
    for name in metric_names([a, b]):
        va, vb = a["metrics"].get(name), b["metrics"].get(name)
        out.append(
            f"<tr><td>{e(name)}</td><td class='num'>{e(_fmt(va))}</td>"
            f"<td class='num'>{e(_fmt(vb))}</td><td>{e(_better(name, va, vb, [la, lb]))}</td></tr>"
        )
    out.append("</table><h2>Examples</h2><table><tr><th>#</th><th>query</th>")
    out.append(f"<th>{e(la)}</th><th>{e(lb)}</th></tr>")
    for i, ex in enumerate(cmp["examples"], start=1):
        cells = "".join(f"<td><pre>{e(ex[k])}</pre></td>" for k in ("prompt", "a", "b"))
        out.append(f"<tr><td>{i}</td>{cells}</tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


# The count each rate or score is taken over (the rest: the generated answers).
COUNT_OF = {"direction_accuracy": "direction_examples", "brier_score": "confidence_examples",
            "placeholder_use_rate": "placeholder_examples",
            "placeholder_compliance": "placeholder_examples"}  # fmt: skip


def evaluation_summary(evaluation: dict[str, Any] | None) -> dict[str, float | str]:
    """The post-training evaluation's metrics for a run summary (MLflow): numbers as
    `evaluation.<base|tuned>.<metric>`, and a metric measured over zero examples as the
    string "null (over 0 <count>)", so it is a tag there and never a 0.0 metric."""
    out: dict[str, float | str] = {}
    for who in ("base", "tuned"):
        result = (evaluation or {}).get(who) or {}
        for name, value in (result.get("metrics") or {}).items():
            key = f"evaluation.{who}.{name}"
            if value is None:
                out[key] = f"null (over 0 {COUNT_OF.get(name, 'examples_generated')})"
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = float(value)
    return out
