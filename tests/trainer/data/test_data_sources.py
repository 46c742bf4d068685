"""Readers: line numbers per format, streaming JSON, and a bounded memory budget."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from kubetune_trainer.data.sources import read_rows


def test_csv_rows_and_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text('a,b\n1,2\n\n"multi\nline",3\n4\n5,6\n')
    rows = list(read_rows(str(p)))
    assert [(r.line, r.data) for r in rows if r.data] == [
        (2, {"a": "1", "b": "2"}), (4, {"a": "multi\nline", "b": "3"}), (7, {"a": "5", "b": "6"})
    ]  # fmt: skip
    assert [(r.line, r.error) for r in rows if r.error] == [(6, "expected 2 columns, got 1")]


def test_json_list_lines_same_streaming_or_not(tmp_path: Path) -> None:
    p = tmp_path / "l.json"
    p.write_text('[\n  {"a": 1},\n  {"a": "x\\ny",\n   "b": [1,\n 2]},\n  3,\n  {"a": 4}\n]\n')
    for streaming in (False, True):
        rows = list(read_rows(str(p), streaming=streaming))
        assert [(r.line, r.data or r.error) for r in rows] == [
            (2, {"a": 1}), (3, {"a": "x\ny", "b": [1, 2]}),
            (6, "expected a JSON object, got int"), (7, {"a": 4}),
        ]  # fmt: skip


def test_broken_json_list_reports_its_line(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_text('[\n{"a": 1},\n{"a": }\n]')
    rows = list(read_rows(str(p), streaming=True))
    assert rows[0].data == {"a": 1}
    assert rows[1].line == 3 and rows[1].error and rows[1].error.startswith("invalid JSON")


def test_folder_reads_every_data_file_in_order(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.jsonl").write_text('{"x": 2}\n')
    (tmp_path / "d" / "a.jsonl").write_text('{"x": 1}\n')
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    rows = list(read_rows(str(tmp_path / "d")))
    assert [(r.origin.rsplit("/", 1)[1], r.data) for r in rows] == [
        ("a.jsonl", {"x": 1}), ("b.jsonl", {"x": 2})
    ]  # fmt: skip


def _peak_while_reading(path: Path, streaming: bool) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for r in read_rows(str(path), streaming=streaming) if r.data)
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_stays_far_below_file_size(tmp_path: Path) -> None:
    row = {"question": "What is the normal resting heart rate? " * 4, "answer": "60-100 bpm. " * 8}
    n = 10_000
    jsonl, lst, csv = tmp_path / "big.jsonl", tmp_path / "big.json", tmp_path / "big.csv"
    with jsonl.open("w") as f:
        for _ in range(n):
            f.write(json.dumps(row) + "\n")
    with lst.open("w") as f:
        f.write("[\n" + ",\n".join(json.dumps(row) for _ in range(n)) + "\n]\n")
    with csv.open("w") as f:
        f.write("question,answer\n" + f'"{row["question"]}","{row["answer"]}"\n' * n)
    for path in (jsonl, lst, csv):
        size = path.stat().st_size
        assert size > 2_000_000
        count, peak = _peak_while_reading(path, streaming=True)
        assert count == n
        assert peak < size / 10, (path.name, peak, size)  # bounded by chunks, not the file
    # Without streaming a JSON list is read whole: the budget is the file itself.
    assert _peak_while_reading(lst, streaming=False)[1] > lst.stat().st_size
