"""`kubetune compare`: same records and settings on both sides, escaped HTML, the
before/after summary `kubetune run` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from kt_tiny_lm import finance_doc, finance_job, random_adapter

from kubetune_trainer.evaluation.compare import before_after, before_after_text, pair_results
from kubetune_trainer.evaluation.report import comparison_html, comparison_markdown


def _result(model: str, output: str, loss: float) -> dict:
    example = {"prompt": "<script>alert(1)</script> | q?", "reference": "r", "output": output}
    return {
        "model": model, "format": "qa", "generation": {"seed": 0},
        "metrics": {"loss": loss, "exact_match": 0.5, "loss_tokens": 10.0},
        "examples": [example],
    }  # fmt: skip


def test_html_and_markdown_escape_and_judge() -> None:
    a = _result("base & co", "<b>bold</b>", 2.0)
    b = _result("tuned", "a|b\nc", 1.0)
    cmp = pair_results(a, b, ("base", "tuned"))
    page = comparison_html(cmp)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "base &amp; co" in page
    # Lower loss wins; equal exact match is a tie; counts are not judged.
    assert re.search(r"<td>loss</td>.*<td>tuned</td></tr>", page)
    assert re.search(r"<td>exact_match</td>.*<td>=</td></tr>", page)
    assert re.search(r"<td>loss_tokens</td>.*<td></td></tr>", page)
    md = comparison_markdown(cmp)
    assert "| loss | 2 | 1 | tuned |" in md
    # One example row, its pipe and newline kept inside the cell.
    assert "a\\|b<br>c" in md and "&lt;script&gt;" in md


def test_compare_cli_base_vs_adapter(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.cli import main

    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(json.dumps(finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))))
    other = random_adapter(tiny_dirs["base"], tmp_path / "other", seed=5)
    out = tmp_path / "report"
    res = CliRunner().invoke(
        main,
        ["compare", str(spec_file), "--a", str(other), "--b", str(tiny_dirs["adapter"]),
         "--labels", "v1,v2", "-o", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| metric | v1 | v2 | better |" in res.output
    a = json.loads((out / "result-a.json").read_text())
    b = json.loads((out / "result-b.json").read_text())
    assert a["adapter"] == str(other) and b["adapter"] == str(tiny_dirs["adapter"])
    assert [x["prompt"] for x in a["examples"]] == [x["prompt"] for x in b["examples"]]
    assert a["metrics"]["loss"] != b["metrics"]["loss"]
    page = (out / "comparison.html").read_text()
    assert page.count("<tr><td>") >= len(a["examples"])


def test_before_after_for_run(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.data.prepare import prepare

    job = finance_job(tiny_dirs["data"], str(tiny_dirs["base"]))
    prepared = prepare(job)
    cmp = before_after(job, tiny_dirs["adapter"], prepared, tmp_path)
    assert cmp["a"]["adapter"] is None and cmp["b"]["adapter"] == str(tiny_dirs["adapter"])
    text = before_after_text(cmp)
    assert text.splitlines()[0].split() == ["metric", "base", "tuned"]
    assert "format_compliance" in text and text.count("Example ") == 2
    assert (tmp_path / "comparison.html").is_file()
