"""Base vs adapter, or adapter A vs adapter B, on the same evaluation set.

`compare_models` evaluates both with the same records and generation settings and pairs
their outputs per example; `before_after` is the short version `kubetune run` prints at
the end of a job (format compliance and two answers side by side).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob

from .models import LoadedModel
from .report import comparison_html, comparison_markdown
from .runner import EvalResult, evaluate

Record = dict[str, Any]


def pair_results(a: EvalResult, b: EvalResult, labels: tuple[str, str]) -> dict[str, Any]:
    """Join two results of the same evaluation set into one comparison."""
    if a["generation"] != b["generation"]:
        raise ValueError(
            "the two results used different generation settings; compare like with like"
        )
    examples = [
        {"prompt": x["prompt"], "reference": x["reference"], "a": x["output"], "b": y["output"]}
        for x, y in zip(a["examples"], b["examples"], strict=True)
        if x["prompt"] == y["prompt"]
    ]
    return {
        "labels": list(labels),
        "a": a,
        "b": b,
        "generation": a["generation"],
        "examples": examples,
    }


def compare_models(
    a: LoadedModel,
    b: LoadedModel,
    job: FineTuneJob,
    kind: str,
    fmt: str,
    records: list[Record],
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Any]:
    return pair_results(
        evaluate(a, job, kind, fmt, records), evaluate(b, job, kind, fmt, records), labels
    )


def write_comparison(cmp: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """comparison.md and comparison.html in out_dir, and rubric.csv for a human reviewer
    (rubric.py; kept when it exists)."""
    from .rubric import write_template

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md, page = d / "comparison.md", d / "comparison.html"
    md.write_text(comparison_markdown(cmp))
    page.write_text(comparison_html(cmp))
    write_template(cmp, d)
    return md, page


def _side_by_side(left: str, right: str, width: int) -> list[str]:
    import textwrap

    lw = [ln for para in left.splitlines() for ln in (textwrap.wrap(para, width) or [""])]
    rw = [ln for para in right.splitlines() for ln in (textwrap.wrap(para, width) or [""])]
    n = max(len(lw), len(rw))
    lw += [""] * (n - len(lw))
    rw += [""] * (n - len(rw))
    return [f"{x:<{width}} | {y}" for x, y in zip(lw, rw, strict=True)]


def before_after_text(cmp: dict[str, Any], n_examples: int = 2, width: int = 48) -> str:
    """Plain text for a terminal: the compliance/overlap metrics, then answers side by side."""
    la, lb = cmp["labels"]
    ma, mb = cmp["a"]["metrics"], cmp["b"]["metrics"]
    keys = [k for k in ("format_compliance", "citation_rate", "risk_note_rate",
                        "placeholder_use_rate", "placeholder_compliance", "exact_match",
                        "answer_accuracy", "gene_symbol_recall", "variant_recall",
                        "unsupported_variant_rate", "gene_cloze_accuracy", "rouge_l", "loss",
                        "preference_accuracy", "ordering_accuracy", "perplexity")
            if k in ma]  # fmt: skip
    lines = [f"{'metric':<24}{la:>12}{lb:>12}"]
    for k in keys:
        cells = [f"{v:>12.3f}" if v is not None else f"{'n/a':>12}" for v in (ma[k], mb.get(k))]
        lines.append(f"{k:<24}{''.join(cells)}")
    if "placeholder_use_rate" in ma:
        n = cmp["a"].get("examples_generated", len(cmp["examples"]))
        lines.append(
            f"(placeholder rows: over the {ma.get('placeholder_examples', 0):.0f} of {n} "
            "answers that need <PRICE>/<CHANGE>/<TIMESTAMP> live values)"
        )
    for i, ex in enumerate(cmp["examples"][:n_examples], start=1):
        lines += ["", f"Example {i}: {ex['prompt']}", "-" * (2 * width + 3)]
        lines += _side_by_side(f"[{la}]\n{ex['a']}", f"[{lb}]\n{ex['b']}", width)
    return "\n".join(lines)


def before_after(
    job: FineTuneJob, adapter_dir: str | Path, prepared: Any, out_dir: str | Path | None = None
) -> dict[str, Any]:
    """What `kubetune run` calls after training: base vs tuned on the validation set.

    Loads base and base + adapter (full precision), evaluates both with the job's
    evaluation settings, writes comparison.md/.html to out_dir when given, and returns
    the comparison (print `before_after_text(cmp)`).
    """
    from .models import load_model

    tuned = load_model(None, str(adapter_dir))
    base = load_model(tuned.base)
    cmp = compare_models(
        base, tuned, job, prepared.kind, prepared.format, prepared.validation, ("base", "tuned")
    )
    if out_dir is not None:
        write_comparison(cmp, out_dir)
    return cmp
