"""Too little validation data is said at prepare time, with the reason; domain metrics
over zero examples are null (with their count), never 0.0."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from kubetune_trainer.cli import main
from kubetune_trainer.data import prepare
from kubetune_trainer.evaluation.domain import finance_metrics, trading_metrics
from tests.support.trainer.data import dataset_job, job_dict, write_jsonl

TAIL = ("; no base/tuned comparison will be made (add data, raise validation.fraction, or "
        "give validation.source)")  # fmt: skip


def qa(n: int, same_answer: bool = False) -> list[dict[str, str]]:
    return [{"question": f"Q{i}?", "answer": "Yes." if same_answer else f"A{i}."}
            for i in range(n)]  # fmt: skip


def test_one_group_fraction_zero_and_min_examples(tmp_path: Path) -> None:
    same = write_jsonl(tmp_path / "same.jsonl", qa(10, same_answer=True))
    assert prepare(dataset_job(same)).stats.validation_note == (
        "validation has 0 example(s), fewer than validation.minExamples 1: every example is "
        "in one split group (identical answers, or a single paper), and a group is never "
        "split" + TAIL
    )
    many = write_jsonl(tmp_path / "many.jsonl", qa(40))
    assert prepare(dataset_job(many, validation={"fraction": 0})).stats.validation_note == (
        "validation has 0 example(s), fewer than validation.minExamples 1: "
        "validation.fraction is 0" + TAIL
    )
    data = prepare(dataset_job(many, validation={"fraction": 0.1, "minExamples": 20}))
    n = len(data.validation)
    assert 0 < n < 20
    assert data.stats.validation_note == (
        f"validation has {n} example(s), fewer than validation.minExamples 20: "
        f"validation.fraction 0.1 of the data's groups gave {n}" + TAIL
    )
    assert prepare(dataset_job(many)).stats.validation_note is None


def test_prepare_prints_the_warning(tmp_path: Path) -> None:
    same = write_jsonl(tmp_path / "same.jsonl", qa(10, same_answer=True))
    job = job_dict(str(same))
    job["spec"]["model"]["base"] = str(tmp_path / "no-model")  # skips the truncation count
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(main, ["prepare", str(tmp_path / "job.yaml"), "--out",
                                    str(tmp_path / "out")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning: validation has 0 example(s), fewer than validation.minExamples 1: " in (
        res.output)  # fmt: skip


def test_metrics_over_zero_examples_are_none_with_their_count() -> None:
    m = trading_metrics(["no json here", "nor here"], [{"meta": {"forward_return_pct": 3.0}}] * 2)
    assert m == {"recommendation_parse_rate": 0.0, "direction_accuracy": None,
                 "direction_examples": 0.0, "brier_score": None,
                 "confidence_examples": 0.0}  # fmt: skip
    assert trading_metrics([], [])["recommendation_parse_rate"] is None
    f = finance_metrics([], [])
    assert f["format_compliance"] is None and f["placeholder_use_rate"] is None
    assert f["placeholder_examples"] == 0.0
