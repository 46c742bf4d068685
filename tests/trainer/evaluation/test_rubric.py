"""Human rubric: the comparison writes rubric.csv for a reviewer, `kubetune rubric DIR`
checks the clarity/correctness scores (1-5) and stores them with the comparison report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from kubetune_trainer.cli import main
from kubetune_trainer.evaluation.compare import pair_results, write_comparison
from kubetune_trainer.evaluation.rubric import COLUMNS, SECTION

GEN = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0, "decoding": "greedy"}
EXAMPLES = [("Is 120/80 normal?", "Yes, that is normal."), ("Dose of X?", "Ask a doctor.")]


def result(label: str, outputs: list[str]) -> dict:
    return {
        "model": label, "base": "b", "adapter": None, "format": "qa", "kind": "sft",
        "examples_scored": 2, "examples_generated": 2, "generation": GEN,
        "metrics": {"rouge_l": 0.5, "exact_match": 0.0},
        "examples": [{"prompt": p, "reference": r, "output": o}
                     for (p, r), o in zip(EXAMPLES, outputs, strict=True)],
        "seconds": 1.0,
    }  # fmt: skip


def comparison(tmp_path: Path) -> Path:
    cmp = pair_results(result("base", ["yes", "?"]), result("tuned", ["Yes.", "See a doctor."]),
                       ("base", "tuned"))  # fmt: skip
    out = tmp_path / "cmp"
    write_comparison(cmp, out)
    return out


def fill(path: Path, scores: dict[tuple[str, str], tuple[str, str]]) -> None:
    rows = list(csv.DictReader(path.open(newline="")))
    for row in rows:
        row["clarity"], row["correctness"] = scores.get((row["example"], row["model"]), ("", ""))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def test_template_lists_every_answer_and_merge_stores_the_means(tmp_path: Path) -> None:
    out = comparison(tmp_path)
    rows = list(csv.DictReader((out / "rubric.csv").open(newline="")))
    assert [(r["example"], r["model"], r["output"]) for r in rows] == [
        ("1", "base", "yes"), ("1", "tuned", "Yes."), ("2", "base", "?"),
        ("2", "tuned", "See a doctor.")]  # fmt: skip
    assert rows[0]["prompt"] == EXAMPLES[0][0] and rows[0]["reference"] == EXAMPLES[0][1]
    assert all(r["clarity"] == r["correctness"] == "" for r in rows)

    fill(out / "rubric.csv", {("1", "base"): ("2", "3"), ("2", "base"): ("1", ""),
                              ("1", "tuned"): ("5", "4"), ("2", "tuned"): ("4", "5")})  # fmt: skip
    res = CliRunner().invoke(main, ["rubric", str(out)])
    assert res.exit_code == 0, res.output
    stored = json.loads((out / "rubric.json").read_text())
    assert stored["models"]["base"] == {"clarity_mean": 1.5, "correctness_mean": 3.0,
                                        "clarity_scored": 2, "correctness_scored": 1}  # fmt: skip
    assert stored["models"]["tuned"]["clarity_mean"] == 4.5
    md = (out / "comparison.md").read_text()
    assert "| tuned | 4.50 | 4.50 | 2 |" in md and "| base | 1.50 | 3.00 | 2 |" in md
    CliRunner().invoke(main, ["rubric", str(out)])  # merged again: one section, not two
    assert (out / "comparison.md").read_text().count(SECTION) == 1

    # A second comparison into the same folder keeps the reviewer's file.
    before = (out / "rubric.csv").read_text()
    comparison(tmp_path)
    assert (out / "rubric.csv").read_text() == before


def test_a_bad_score_names_line_and_column_and_writes_nothing(tmp_path: Path) -> None:
    out = comparison(tmp_path)
    fill(out / "rubric.csv", {("1", "base"): ("4", "7")})
    res = CliRunner().invoke(main, ["rubric", str(out)])
    assert res.exit_code == 65
    assert f"{out / 'rubric.csv'}:2: `correctness` must be a whole number from 1 to 5" in res.output
    assert not (out / "rubric.json").exists() and SECTION not in (out / "comparison.md").read_text()
    fill(out / "rubric.csv", {})
    res = CliRunner().invoke(main, ["rubric", str(out)])
    assert res.exit_code == 65 and "no scores yet" in res.output
    res = CliRunner().invoke(main, ["rubric", str(tmp_path / "nowhere")])
    assert res.exit_code == 65 and "rubric.csv not found" in res.output
