"""Bad FineTuneJobs: each gives one clear message naming the field path and the fix.

Every case goes through the model (parse_job) and through `kubetune validate` as a user runs
it: in-process with click's runner (exceptions propagate, so a crash fails the case) and all
together in one real subprocess (what a traceback would really print to).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubetune_api.loader import InvalidSpecError, parse_job
from kubetune_trainer.commands.validate import command as validate_command
from tests.support.spec_cases import BASE, CASES, mutate


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_invalid_spec_names_field_and_fix(
    changes: dict[str, Any], path: str, words: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_job(mutate(changes), "job.yaml", by_name=False)  # as load_file parses a file
    errors = info.value.errors
    assert len(errors) == 1, [str(e) for e in errors]
    err = errors[0]
    assert err.path == path, str(err)
    for word in words:
        assert word in err.message, str(err)


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_kubetune_validate_prints_one_problem_line(
    changes: dict[str, Any], path: str, words: tuple[str, ...], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(yaml.safe_dump(mutate(changes)))
    # catch_exceptions=False: anything but the command's own exit is raised into the test.
    result = CliRunner().invoke(validate_command, ["job.yaml"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    problems = [ln for ln in result.stderr.splitlines() if ln.startswith("job.yaml: ")]
    assert len(problems) == 1, result.stderr
    assert problems[0].startswith(f"job.yaml: {path}: "), problems[0]
    for word in words:
        assert word in problems[0], problems[0]
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == "1 of 1 file(s) invalid"


def test_every_case_through_a_real_kubetune_validate(tmp_path: Path) -> None:
    files = []
    for case_id, changes, _, _ in CASES:
        f = tmp_path / f"{case_id}.yaml"
        f.write_text(yaml.safe_dump(mutate(changes)))
        files.append(f.name)
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "validate", *files],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    for (case_id, _, path, _), name in zip(CASES, files, strict=True):
        mine = [ln for ln in lines if ln.startswith(f"{name}: ")]
        assert len(mine) == 1 and mine[0].startswith(f"{name}: {path}: "), (case_id, mine)
    assert f"{len(CASES)} of {len(CASES)} file(s) invalid" in proc.stderr


def test_base_document_is_valid() -> None:
    job = parse_job(copy.deepcopy(BASE))
    assert job.spec.adapter.target_modules == ["q_proj", "v_proj"]
    assert job.spec.quantization.mode == "none"
    assert job.spec.model.trust_remote_code is False


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_every_error_is_reported_at_once() -> None:
    doc = mutate({"spec.training.learningRate": -1, "spec.adapter.r": 0, "spec.bogus": 1})
    with pytest.raises(InvalidSpecError) as info:
        parse_job(doc)
    assert {e.path for e in info.value.errors} == {
        "spec.training.learningRate", "spec.adapter.r", "spec.bogus"}  # fmt: skip
