"""Malformed real-world files: deep nesting, lone surrogates, giant CSV cells, BOMs and
bytes that are not UTF-8. Each case writes its own file and checks the exact message,
the `file:line` and the counts (never a traceback, never silently changed data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.decoding import MAX_CSV_CELL, MAX_DEPTH
from kubetune_trainer.data.prepare import prepare_to_files
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import dataset_job, write_jsonl

QA = {"question": "What is the dose?", "answer": "Ask your doctor."}


def qa_rows(n: int) -> list[dict[str, str]]:
    return [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(n)]


def nested(depth: int) -> str:
    """A row whose field `x` nests `depth` lists (the row object is one more level)."""
    return '{"question": "q?", "answer": "a.", "x": ' + "[" * depth + "]" * depth + "}"


def bad_data(job: Any) -> BadDataError:
    with pytest.raises(BadDataError) as err:
        prepare(job)
    return err.value


# --- 1. crashes become clear errors -----------------------------------------------------


def test_deep_jsonl_row_is_a_bad_row_with_the_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [QA, nested(5000), nested(MAX_DEPTH), QA])
    err = bad_data(dataset_job(path))
    lines = str(err).splitlines()
    assert lines[0].startswith(f"{path}: 2 invalid row(s)")
    assert lines[1] == f"{path}:2: JSON nested deeper than {MAX_DEPTH} levels (the limit per row)"
    assert lines[2] == f"{path}:3: JSON nested deeper than {MAX_DEPTH} levels (the limit per row)"
    ok = write_jsonl(tmp_path / "ok.jsonl", [QA, nested(MAX_DEPTH - 1)])
    assert prepare(dataset_job(ok, validation={"fraction": 0})).stats.kept == 2


@pytest.mark.parametrize("streaming", [False, True])
def test_deep_json_list_element_stops_with_its_line(tmp_path: Path, streaming: bool) -> None:
    path = tmp_path / "d.json"
    path.write_text("[\n" + json.dumps(QA) + ",\n" + nested(5000) + "\n]\n")
    job = dataset_job(path, format="qa", streaming=streaming, badRows="skip")
    data = prepare(job)
    assert (data.stats.read, data.stats.kept, data.stats.skipped) == (2, 1, 1)
    assert data.stats.problems == [
        f"{path}:3: JSON nested deeper than {MAX_DEPTH} levels (the limit per row); "
        "the rest of this file is not read"
    ]


def test_lone_surrogate_refused_by_default(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [QA, '{"question": "Dose\\ud800?", "answer": "a"}'])
    err = bad_data(dataset_job(path))
    assert str(err).splitlines()[1] == (
        f"{path}:2: field `question` holds a lone surrogate (a \\ud800-\\udfff escape without "
        "its pair), which is not valid Unicode; fix the escape or set "
        "dataset.onDecodeError: replace"
    )


def test_lone_surrogate_replaced_with_a_counted_warning(tmp_path: Path) -> None:
    rows = [*qa_rows(3), '{"question": "Dose\\ud800?", "answer": "a\\udfff\\udfff"}']
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    job = dataset_job(path, onDecodeError="replace", validation={"fraction": 0})
    out = prepare_to_files(job, tmp_path / "out")  # writing it out used to crash
    assert out.stats.warned == 1
    assert out.stats.warnings == [f"{path}:4: 3 lone surrogate(s) replaced with U+FFFD"]
    last = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[-1])
    assert (last["prompt"], last["completion"]) == ("Dose\ufffd?", "a\ufffd\ufffd")


def test_csv_cells_beyond_128_kib_are_read(tmp_path: Path) -> None:
    context = "word " * 60_000  # 300 KB, over Python's 128 KiB default
    path = tmp_path / "qa.csv"
    path.write_text(f'question,answer,context\nWhy?,Because.,"{context}"\nHow?,So.,short\n')
    data = prepare(dataset_job(path, validation={"fraction": 0}))
    assert data.stats.kept == 2
    assert data.train[0]["prompt"].startswith(context.strip()[:50])


def test_csv_cell_past_the_limit_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    big = "x" * (MAX_CSV_CELL + 1)
    path.write_text(f'question,answer,context\nWhy?,Because.,short\nHow?,So.,"{big}"\n')
    err = bad_data(dataset_job(path, format="qa"))
    assert str(err).splitlines()[1] == (
        f"{path}:3: unreadable CSV: a cell is longer than {MAX_CSV_CELL} characters "
        "(the CSV cell limit); the rest of this file is not read"
    )


# --- 2. decoding --------------------------------------------------------------------------


BOM = b"\xef\xbb\xbf"


def test_bom_is_stripped_in_csv_json_and_jsonl(tmp_path: Path) -> None:
    rows = qa_rows(4)
    csv_text = "question,answer\n" + "".join(f"{r['question']},{r['answer']}\n" for r in rows)
    files = {
        "b.csv": csv_text,
        "b.json": json.dumps(rows),
        "b.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
    }
    for name, text in files.items():
        path = tmp_path / name
        path.write_bytes(BOM + text.encode())
        data = prepare(dataset_job(path, validation={"fraction": 0}))
        assert (data.format, data.stats.kept, data.stats.skipped) == ("qa", 4, 0), name
        assert data.train[0]["prompt"] == "Question 0?"


def latin1_prices(tmp_path: Path) -> Path:
    """A CSV whose line 3 spells the ticker in Latin-1 (the byte 0xc9 is not UTF-8)."""
    path = tmp_path / "p.csv"
    lines = [b"question,answer"] + [f"Q{i}?,A{i}.".encode() for i in range(5)]
    lines[2] = "Q1 SOCI\u00c9T\u00c9?,A1.".encode("latin-1")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_invalid_utf8_is_an_error_with_line_and_byte_offset(tmp_path: Path) -> None:
    path = latin1_prices(tmp_path)
    offset = path.read_bytes().index(b"\xc9")
    err = bad_data(dataset_job(path, format="qa"))
    assert str(err) == (
        f"{path}:3: byte offset {offset}: bytes c9 are not valid utf-8 (invalid continuation "
        "byte); set dataset.encoding to the file's encoding (e.g. latin-1), or "
        "dataset.onDecodeError: replace to read them as U+FFFD"
    )


def test_encoding_and_replace_opt_ins(tmp_path: Path) -> None:
    path = latin1_prices(tmp_path)
    data = prepare(dataset_job(path, format="qa", encoding="latin-1", validation={"fraction": 0}))
    assert data.train[1]["prompt"] == "Q1 SOCI\u00c9T\u00c9?"
    assert data.stats.warned == 0
    data = prepare(dataset_job(path, format="qa", onDecodeError="replace",
                            validation={"fraction": 0}))  # fmt: skip
    assert data.train[1]["prompt"] == "Q1 SOCI\ufffdT\ufffd?"
    offset = path.read_bytes().index(b"\xc9")
    assert data.stats.warnings == [
        f"{path}:3: undecodable bytes replaced with U+FFFD (first at byte offset {offset})"
    ]


def test_encoding_must_be_known_and_ascii_compatible() -> None:
    from kubetune_api.loader import InvalidSpecError

    with pytest.raises(InvalidSpecError) as err:
        dataset_job("d.jsonl", encoding="utf-9")
    assert str(err.value).endswith(
        "spec.dataset.encoding: unknown text encoding 'utf-9' (e.g. utf-8, latin-1, cp1252)"
    )
    with pytest.raises(InvalidSpecError, match="'utf-16' is not ASCII-compatible"):
        dataset_job("d.jsonl", encoding="utf-16")
