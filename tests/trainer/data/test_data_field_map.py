"""dataset.fieldMap: targets checked against the format at validate time, dotted paths
into nested fields, missing mapped fields named, and filtered rows counted by rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubetune_api.spec_data import FORMAT_FIELDS
from kubetune_trainer.cli import main
from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats import FORMAT_KEYS
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import dataset_job, job_dict, write_jsonl


def validate(tmp_path: Path, **dataset: Any) -> Any:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict("data.jsonl", **dataset)))
    return CliRunner().invoke(main, ["validate", str(path)])


def test_validate_refuses_a_reversed_mapping_with_the_allowed_names(tmp_path: Path) -> None:
    res = validate(tmp_path, format="qa", fieldMap={"Q": "question", "answer": "A"})
    assert res.exit_code == 1
    assert (
        "spec.dataset.fieldMap: a key is not a field of format qa; keys are the format's "
        "fields (question, answer, context), values the source's fields, e.g. {question: Q}"
    ) in res.output


def test_validate_refuses_a_misspelled_target_under_auto(tmp_path: Path) -> None:
    res = validate(tmp_path, fieldMap={"questoin": "Q"})
    assert res.exit_code == 1
    assert "spec.dataset.fieldMap: a key is not a field of any format; keys are" in res.output
    assert validate(tmp_path, fieldMap={"question": "Q"}).exit_code == 0
    labelled = validate(tmp_path, format="papers", papers={"labelField": "topic"},
                        fieldMap={"topic": "meta.area"})  # fmt: skip
    assert labelled.exit_code == 0, labelled.output


def test_format_fields_cover_the_detection_keys() -> None:
    for name, alts in FORMAT_KEYS.items():
        for alt in alts:
            assert set(alt) <= set(FORMAT_FIELDS[name]), name


def test_dotted_paths_read_nested_fields(tmp_path: Path) -> None:
    rows = [{"id": i, "data": {"q": f"Question {i}?", "answers": [{"text": f"Answer {i}."}]}}
            for i in range(3)]  # fmt: skip
    path = write_jsonl(tmp_path / "n.jsonl", rows)
    job = dataset_job(path, fieldMap={"question": "data.q", "answer": "data.answers.0.text"},
                   validation={"fraction": 0})  # fmt: skip
    data = prepare(job)
    assert data.format == "qa"  # detected through the mapping
    pairs = [(r["prompt"], r["completion"]) for r in data.train]
    assert pairs == [(f"Question {i}?", f"Answer {i}.") for i in range(3)]


def test_a_missing_mapped_field_names_where_it_was_read(tmp_path: Path) -> None:
    rows = [{"Q": "Why?", "A": "Because."}, {"Q": "How?", "Answer": "So."}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job(path, format="qa", fieldMap={"question": "Q", "answer": "A"}))
    assert str(err.value).splitlines()[1] == (
        f"{path}:2: missing field `answer` (read from `A` by dataset.fieldMap)"
    )


def test_filtered_rows_are_counted_by_rule(tmp_path: Path) -> None:
    rows = [{"prompt": f"P{i}?", "output": f"O{i}.", "rating": i} for i in range(6)]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    data = prepare(dataset_job(path, format="rated", validation={"fraction": 0}))
    assert data.stats.filtered_by == {"rated.minRating 4.0 (rated below)": 4}
    low = write_jsonl(tmp_path / "low.jsonl", rows[:3])
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job(low, format="rated"))
    assert str(err.value) == (
        f"{low}: no training examples left (read 3, bad 0, filtered 3: "
        "3 by rated.minRating 4.0 (rated below))"
    )
