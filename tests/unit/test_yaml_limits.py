"""Spec files are read with limits: size, nesting, aliases, duplicate keys, numbers, encodings.

Each test goes through load_file (what `kubetune validate`, `run` and `train` call) and checks
the error names the key path and line, or that a valid file reads as the API server reads it.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubetune_api import safe_yaml
from kubetune_api.loader import load_file, load_job
from kubetune_trainer.commands.validate import command as validate_command

GOOD = """\
apiVersion: kubetune.io/v1alpha1
kind: FineTuneJob
metadata:
  name: ok-job
spec:
  model: {base: builtin:tiny-llama}
  dataset: {source: d.jsonl, format: qa}
"""


def _errors(tmp_path: Path, text: str | bytes, name: str = "job.yaml") -> list[str]:
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return [str(e) for e in load_file(f).errors]


def _bomb(levels: int = 9, indent: str = "    ") -> str:
    lines = [indent + 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_the_c_loader_is_used() -> None:
    assert safe_yaml.USING_LIBYAML
    assert issubclass(safe_yaml.SpecLoader, yaml.CSafeLoader)


def test_a_good_file_loads() -> None:
    docs = list(safe_yaml.load_all(GOOD))
    assert docs[0]["metadata"]["name"] == "ok-job"


def test_alias_bomb_under_metadata_is_refused_fast_and_small(tmp_path: Path) -> None:
    # 9^9 (387 million) strings once expanded; refused from the event stream.
    text = GOOD.replace("  name: ok-job\n", "  name: ok-job\n  annotations:\n" + _bomb())
    tracemalloc.start()
    errors = _errors(tmp_path, text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Expanded, the bomb is gigabytes: a small peak shows it was refused from the events.
    assert peak < 20 * 2**20, peak
    assert len(errors) == 1 and "more than 20000 values" in errors[0], errors
    assert errors[0].startswith("metadata.annotations.l"), errors


def test_small_anchors_are_accepted(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  dataset: {source: d.jsonl, format: qa}\n",
        "  dataset: {source: &src d.jsonl, format: qa, validation: {source: *src}}\n"
        "  adapter: &ad {r: 8}\n",
    )
    (tmp_path / "j.yaml").write_text(text)
    job = load_job(tmp_path / "j.yaml")
    assert job.spec.dataset.validation.source == "d.jsonl"


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD + "status: &s {a: [*s]}\n")
    assert errors == ["status.a[0]: line 8: alias *s refers to itself"], errors


def test_deep_nesting_is_refused_fast(tmp_path: Path) -> None:
    errors = _errors(tmp_path, GOOD + "status: " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert len(errors) == 1 and "nested more than 32 levels deep" in errors[0], errors
    assert errors[0].startswith("status[0][0]"), errors


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.write(GOOD.encode() + b"# " + b"x" * 100)
        f.truncate(200 * 2**20)  # sparse: 200 MB, reading it all would be slow and large
    tracemalloc.start()
    errors = [str(e) for e in load_file(big).errors]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert errors == [
        "the file is larger than 2 MiB; a FineTuneJob is a few KB (put data in "
        "dataset.source, not in the spec)"
    ]
    assert peak < 3 * safe_yaml.MAX_DOCUMENT_BYTES


def test_duplicate_keys_name_the_path_and_both_lines(tmp_path: Path) -> None:
    text = GOOD + "  training:\n    maxSteps: 5\n    learningRate: 0.1\n    maxSteps: 50\n"
    errors = _errors(tmp_path, text)
    assert errors == [
        "spec.training.maxSteps: line 11: duplicate key 'maxSteps' (first at line 9); "
        "keep one of them"
    ]


def test_duplicate_keys_in_json_are_refused(tmp_path: Path) -> None:
    text = (
        '{"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": '
        '{"name": "a", "name": "b"}, "spec": {}}'
    )
    errors = _errors(tmp_path, text, "job.json")
    assert len(errors) == 1 and errors[0].startswith("metadata.name: line 1: duplicate key")


def test_numbers_read_as_the_api_server_reads_them(tmp_path: Path) -> None:
    text = GOOD + "  training: {learningRate: 1e-4, weightDecay: 1E-2, maxSteps: 1_000}\n"
    (tmp_path / "j.yaml").write_text(text)
    job = load_job(tmp_path / "j.yaml")
    assert job.spec.training.learning_rate == 1e-4
    assert job.spec.training.weight_decay == 0.01
    assert job.spec.training.max_steps == 1000
    docs = list(safe_yaml.load_all("a: 2024-01-01\nb: 1:30\nc: '1e3'\nd: 0x10\n"))
    assert docs == [{"a": "2024-01-01", "b": "1:30", "c": "1e3", "d": 16}]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("9223372036854775808", "does not fit in int64"),
        ("-9223372036854775809", "does not fit in int64"),
        ("9" * 5000, "does not fit in int64"),
        (".inf", "not a finite number"),
        ("-.Inf", "not a finite number"),
        (".nan", "not a finite number"),
        ("1e999", "not a finite number"),
    ],
    ids=["int64+1", "int64-2", "5000-digits", "inf", "-inf", "nan", "overflow"],
)
def test_numbers_outside_int64_or_not_finite_are_refused(
    tmp_path: Path, value: str, words: str
) -> None:
    errors = _errors(tmp_path, GOOD + f"  training: {{maxSteps: {value}}}\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith("spec.training.maxSteps: line 8: ") and words in errors[0]
    assert len(errors[0]) < 200


def test_int64_bounds_themselves_load() -> None:
    docs = list(safe_yaml.load_all(f"a: {2**63 - 1}\nb: {-(2**63)}\n"))
    assert docs == [{"a": 2**63 - 1, "b": -(2**63)}]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("  model: !!binary aGVsbG8=\n", "tag tag:yaml.org,2002:binary is not allowed"),
        ("  model: !!python/name:os.system x\n", "is not allowed"),
        ("  model: !!set {a}\n", "is not allowed"),
        ("  1: x\n", "key '1' must be a string"),
        ("  ? [a]\n  : x\n", "keys must be strings"),
    ],
    ids=["binary", "python", "set", "int-key", "list-key"],
)
def test_non_json_yaml_is_refused(tmp_path: Path, text: str, words: str) -> None:
    errors = _errors(tmp_path, GOOD.replace("  model: {base: builtin:tiny-llama}\n", text))
    assert len(errors) == 1 and words in errors[0], errors


def test_encodings(tmp_path: Path) -> None:
    assert _errors(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()) == []  # a UTF-8 BOM is fine
    utf16 = GOOD.encode("utf-16")
    assert _errors(tmp_path, utf16) == ["the file is UTF-16-encoded; save it as UTF-8"]
    bad = GOOD.encode().replace(b"ok-job", b"ok-\xff-job")
    assert _errors(tmp_path, bad) == [
        "line 4: not UTF-8 text (byte 0xff at offset 72); save the file as UTF-8"
    ]
    nul = GOOD.encode().replace(b"ok-job", b"ok\x00job")
    assert _errors(tmp_path, nul) == [
        "line 4: control character U+0000 is not allowed in YAML/JSON"
    ]


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    long = "x" * 600_000
    text = GOOD + f"  training: {{epochs: {long}}}\n  objective: {long}\n"
    text += f"  ? {long}\n  : 1\n"  # an explicit key: a simple key is at most 1024 characters
    errors = _errors(tmp_path, text)
    assert len(errors) == 3, [e[:100] for e in errors]
    for err in errors:
        assert len(err) < 450, err[:300]
        assert "…" in err or "..." in err


def test_many_errors_are_capped(tmp_path: Path) -> None:
    text = GOOD + "  adapter: {" + ", ".join(f"k{i}: 1" for i in range(500)) + "}\n"
    errors = _errors(tmp_path, text)
    assert len(errors) == 11, errors
    assert errors[-1] == "... and 490 more problem(s) not shown"


def test_set_overrides_use_the_same_rules(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(GOOD)
    job = load_job(tmp_path / "j.yaml", ["training.learningRate=5e-5"])
    assert job.spec.training.learning_rate == 5e-5
    with pytest.raises(ValueError, match="not a finite number"):
        load_job(tmp_path / "j.yaml", ["training.learningRate=.nan"])


def test_validate_and_run_refuse_a_bomb_quickly(tmp_path: Path) -> None:
    text = GOOD.replace("  name: ok-job\n", "  name: ok-job\n  labels:\n" + _bomb())
    (tmp_path / "bomb.yaml").write_text(text)
    result = CliRunner().invoke(validate_command, [str(tmp_path / "bomb.yaml")])
    assert result.exit_code == 1 and "more than 20000 values" in result.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "run", "bomb.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 64, proc.stderr[-2000:]
    assert "more than 20000 values" in proc.stderr and "Traceback" not in proc.stderr


def test_aliases_cannot_expand_text_past_the_size_limit(tmp_path: Path) -> None:
    # 1000 aliases of a 100 KB string: 100 MB once dumped as JSON (the operator's ConfigMap).
    big = "x" * 100_000
    refs = "".join(f"      k{i}: *big\n" for i in range(1000))
    text = GOOD.replace("  dataset: {source: d.jsonl, format: qa}\n", "") + (
        f"  dataset:\n    source: d.jsonl\n    systemPrompt: &big {big}\n    fieldMap:\n{refs}"
    )
    errors = _errors(tmp_path, text)
    assert len(errors) == 1 and "aliases expand this file past 2 MiB" in errors[0], errors
    assert errors[0].startswith("spec.dataset.fieldMap.k"), errors
