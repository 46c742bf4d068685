"""`kubetune compare`: same records and settings on both sides, escaped HTML, the
before/after summary `kubetune run` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from kubetune_trainer.evaluation.compare import before_after, before_after_text, pair_results
from kubetune_trainer.evaluation.report import comparison_html, comparison_markdown
from tests.support.trainer.tiny_lm import finance_doc, finance_job, random_adapter


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


def test_before_after_text_shows_placeholder_rows_and_answers_side_by_side() -> None:
    def finance(model: str, use: float, outputs: list[str]) -> dict:
        metrics = {"format_compliance": use / 2, "citation_rate": 0.25, "risk_note_rate": 1.0,
                   "placeholder_use_rate": use, "placeholder_compliance": 1.0,
                   "placeholder_examples": 2.0, "rouge_l": 0.5, "loss": 3 - use}  # fmt: skip
        examples = [{"prompt": f"q{i}", "reference": "r", "output": o}
                    for i, o in enumerate(outputs, start=1)]  # fmt: skip
        return {"model": model, "format": "finance_qa", "generation": {"seed": 0},
                "metrics": metrics, "examples": examples, "examples_generated": 3}  # fmt: skip

    base = finance("b", 0.25, ["plain", "plain 2", "plain 3"])
    tuned = finance("t", 0.75, ["Answer: <PRICE>", "Answer: <CHANGE>", "x"])
    lines = before_after_text(pair_results(base, tuned, ("base", "tuned"))).splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:8]}
    assert rows["placeholder_use_rate"] == ["0.250", "0.750"]
    assert rows["placeholder_compliance"] == ["1.000", "1.000"]
    assert rows["loss"] == ["2.750", "2.250"]
    assert lines[8] == (
        "(placeholder rows: over the 2 of 3 answers that need "
        "<PRICE>/<CHANGE>/<TIMESTAMP> live values)"
    )
    # Two examples, each with the base and tuned answers in two columns.
    assert [ln for ln in lines if ln.startswith("Example ")] == ["Example 1: q1", "Example 2: q2"]
    assert f"{'[base]':<48} | [tuned]" in lines
    assert f"{'plain 2':<48} | Answer: <CHANGE>" in lines


def _example_rows(page: str) -> int:
    """Rows of the HTML examples table (the metrics rows start with a metric name)."""
    return len(re.findall(r"<tr><td>\d+</td><td><pre>", page))


def _assert_self_contained(page: str) -> None:
    """One file: inline CSS only, nothing fetched or run (no src/href, link, script)."""
    low = page.lower()
    for needle in ("src=", "href=", "<link", "<script", "@import", "url(", "<iframe", "<img"):
        assert needle not in low, needle


def test_compare_cli_adapter_vs_adapter(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.cli import main

    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(json.dumps(finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))))
    other = random_adapter(tiny_dirs["base"], tmp_path / "other", seed=5)
    out = tmp_path / "report"
    res = CliRunner().invoke(
        main,
        ["compare", str(spec_file), "--a", str(other), "--b", str(tiny_dirs["adapter"]),
         "--labels", "v1,v2", "--report", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| metric | v1 | v2 | better |" in res.output
    a = json.loads((out / "result-a.json").read_text())
    b = json.loads((out / "result-b.json").read_text())
    assert a["adapter"] == str(other) and b["adapter"] == str(tiny_dirs["adapter"])
    assert [x["prompt"] for x in a["examples"]] == [x["prompt"] for x in b["examples"]]
    assert a["metrics"]["loss"] != b["metrics"]["loss"]
    page = (out / "comparison.html").read_text()
    assert _example_rows(page) == len(a["examples"]) == 3  # evaluation.maxSamples
    _assert_self_contained(page)


def test_compare_cli_default_is_base_vs_adapter(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import html

    from kubetune_trainer.cli import main

    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(json.dumps(finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))))
    out = tmp_path / "report"
    # Sampling (seeded): the untrained base answers with text too, not just an EOS.
    sampled = "spec.evaluation.generation.temperature=1.0"
    args = ["compare", str(spec_file), "--b", str(tiny_dirs["adapter"]),
            "--labels", "base,tuned", "--report", str(out), "--set", sampled]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "| metric | base | tuned | better |" in res.output
    assert (out / "rubric.csv").is_file() and f"kubetune rubric {out}" in res.output
    a = json.loads((out / "result-a.json").read_text())
    b = json.loads((out / "result-b.json").read_text())
    # A is the base alone (the one adapter B was trained on), B is base + adapter.
    assert a["adapter"] is None and a["base"] == b["base"] == str(tiny_dirs["base"])
    assert b["adapter"] == str(tiny_dirs["adapter"])
    assert a["metrics"]["loss"] != b["metrics"]["loss"]
    pairs = [(x["prompt"], x["output"], y["output"])
             for x, y in zip(a["examples"], b["examples"], strict=True)]  # fmt: skip
    assert len(pairs) == 3 and any(oa != ob for _, oa, ob in pairs)
    assert all(oa and ob for _, oa, ob in pairs)  # real text to find in the reports
    md = (out / "comparison.md").read_text()
    page = (out / "comparison.html").read_text()
    for i, (prompt, oa, ob) in enumerate(pairs, start=1):
        cells = [html.escape(t).replace("|", "\\|").replace("\n", "<br>") for t in (prompt, oa, ob)]
        assert f"| {i} | " + " | ".join(cells) + " |" in md, (i, cells)
        row = "".join(f"<td><pre>{html.escape(t)}</pre></td>" for t in (prompt, oa, ob))
        assert f"<tr><td>{i}</td>{row}</tr>" in page, (i, row)
    assert _example_rows(page) == len(pairs)
    _assert_self_contained(page)


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
