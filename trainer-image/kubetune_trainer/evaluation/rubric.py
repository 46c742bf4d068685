"""Human evaluation of a comparison: clarity and correctness, 1-5, stored with the report.

`kubetune compare ... -o DIR` writes DIR/rubric.csv beside comparison.md: one line per
example and model (both answers to a prompt next to each other), with empty `clarity`,
`correctness` and `notes` columns for a reviewer. `kubetune rubric DIR` reads the filled
file, checks every score (a whole number 1-5; blank = not scored), writes DIR/rubric.json
(per model: mean clarity, mean correctness, how many answers were scored) and adds the
same table to comparison.md. An existing rubric.csv is never overwritten: it may hold a
reviewer's work.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

TEMPLATE = "rubric.csv"
RESULT = "rubric.json"
SCORES = ("clarity", "correctness")
COLUMNS = ("example", "model", "prompt", "reference", "output", *SCORES, "notes")
SECTION = "## Human rubric"


class RubricError(ValueError):
    """A rubric file that cannot be merged (the message names the file, line and column)."""


def write_template(cmp: dict[str, Any], out_dir: str | Path) -> Path | None:
    """DIR/rubric.csv for `cmp` (compare.pair_results), or None when one exists already."""
    path = Path(out_dir) / TEMPLATE
    if path.exists():
        return None
    la, lb = cmp["labels"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, ex in enumerate(cmp["examples"], start=1):
            for label, side in ((la, "a"), (lb, "b")):
                w.writerow([i, label, ex["prompt"], ex["reference"], ex[side], "", "", ""])
    return path


def _score(value: str, where: str, column: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 5:
        raise RubricError(
            f"{where}: `{column}` must be a whole number from 1 to 5 (blank = not scored), "
            f"got {value!r}"
        )
    return int(value)


def read_scores(path: Path) -> dict[str, dict[str, list[int]]]:
    """{model: {clarity: [scores], correctness: [scores]}} from a filled rubric.csv."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("model", *SCORES) if c not in (reader.fieldnames or [])]
        if missing:
            raise RubricError(f"{path}: missing column(s) {', '.join(missing)}; see {TEMPLATE}")
        scores: dict[str, dict[str, list[int]]] = {}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            model = (row.get("model") or "").strip()
            if not model:
                raise RubricError(f"{where}: `model` is empty")
            per = scores.setdefault(model, {c: [] for c in SCORES})
            for column in SCORES:
                s = _score(row.get(column) or "", where, column)
                if s is not None:
                    per[column].append(s)
    return scores


def summarize(scores: dict[str, dict[str, list[int]]]) -> dict[str, Any]:
    def mean(xs: list[int]) -> float | None:
        return round(sum(xs) / len(xs), 3) if xs else None

    return {
        "scale": "1 (poor) to 5 (excellent)",
        "models": {
            model: {
                **{f"{c}_mean": mean(per[c]) for c in SCORES},
                **{f"{c}_scored": len(per[c]) for c in SCORES},
            }
            for model, per in scores.items()
        },
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [SECTION, "", f"Scores by a reviewer, {summary['scale']} ({TEMPLATE}).", "",
             "| model | clarity | correctness | answers scored |", "|---|---|---|---|"]  # fmt: skip
    for model, m in summary["models"].items():
        cells = [f"{m[f'{c}_mean']:.2f}" if m[f"{c}_mean"] is not None else "n/a" for c in SCORES]
        scored = max(m[f"{c}_scored"] for c in SCORES)
        lines.append(f"| {model} | {cells[0]} | {cells[1]} | {scored} |")
    return "\n".join(lines) + "\n"


def merge(out_dir: str | Path) -> dict[str, Any]:
    """Read DIR/rubric.csv, write DIR/rubric.json and the table into DIR/comparison.md.
    Nothing is written when a score is invalid."""
    d = Path(out_dir)
    path = d / TEMPLATE
    if not path.is_file():
        raise RubricError(f"{path} not found: `kubetune compare ... -o {d}` writes it")
    summary = summarize(read_scores(path))
    if not any(m[f"{c}_scored"] for m in summary["models"].values() for c in SCORES):
        raise RubricError(f"{path}: no scores yet; fill the clarity and correctness columns")
    (d / RESULT).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    report = d / "comparison.md"
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        text = text.split(f"\n{SECTION}\n", 1)[0].rstrip("\n")  # merged again: replace it
        report.write_text(f"{text}\n\n{markdown(summary)}", encoding="utf-8")
    return summary
