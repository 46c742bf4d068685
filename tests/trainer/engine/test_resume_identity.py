"""Resume only your own run (issue 18): a checkpoint records the run's identity (training
fields of the spec, data fingerprint, FineTuneJob uid); another run's checkpoint is refused
before any weights load, or set aside (never deleted) for a fresh start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_api.constants import Env, ExitCode
from kubetune_trainer.engine.main import execute
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.builders import BASE_SPEC, make_job, write_qa_jsonl

KUBETUNE = str(Path(sys.executable).with_name("kubetune"))
SHORT = {"maxSteps": 4, "saveSteps": 2, "keepLastCheckpoints": 5}


def _job(tmp: Path, data: Path, **training: Any) -> Any:
    return make_job(
        tmp / "out",
        name="same",
        dataset={"source": str(data), "packing": "none"},
        training={**SHORT, **training},
    )


def _run(job: Any) -> tuple[int, Any, list[str]]:
    said: list[str] = []
    code, result = execute(job, say=said.append)
    return code, result, said


def _committed(run_dir: Path) -> dict[str, str]:
    """step name -> manifest text of every committed checkpoint (to prove none changed)."""
    ckpts = CheckpointStore(open_store(str(run_dir)))
    return {r.name: (run_dir / "checkpoints" / r.name / "MANIFEST.json").read_text()
            for r in ckpts.list_committed()}  # fmt: skip


def _summary(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "termination-log").read_text())


@pytest.fixture
def first_run(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    data = write_qa_jsonl(tmp_path / "data.jsonl", 24)
    code, result, _ = _run(_job(tmp_path, data))
    assert code == 0 and result is not None and result.steps == 4
    run_dir = Path(result.run_uri)
    before = _committed(run_dir)
    assert sorted(before) == ["step-000002", "step-000004"]
    return data, run_dir, before


def test_other_learning_rate_refuses_before_loading_the_model(
    tmp_path: Path, first_run: tuple[Path, Path, dict[str, str]]
) -> None:
    data, run_dir, before = first_run
    code, result, said = _run(_job(tmp_path, data, learningRate=0.01))
    assert code == ExitCode.INVALID_SPEC == 64 and result is None
    summary = _summary(tmp_path)
    msg = summary["message"]
    assert "refusing to resume" in msg and "step-000004" in msg
    assert "spec.training.learningRate differs" in msg
    assert "--no-resume" in msg and "runPolicy.resume: force" in msg and "new name" in msg
    assert "data fingerprint" not in msg  # names only what differs
    assert summary["phase"] == "resume"
    # Refused before any weights load: no preflight, no model line.
    assert not any(s.startswith(("memory preflight", "model:")) for s in said), said
    assert _committed(run_dir) == before


def test_other_data_behind_the_same_path_refuses(
    tmp_path: Path, first_run: tuple[Path, Path, dict[str, str]]
) -> None:
    data, run_dir, before = first_run
    write_qa_jsonl(data, 24, seed=5)  # same file name, other records
    code, result, said = _run(_job(tmp_path, data))
    assert code == 64 and result is None
    msg = _summary(tmp_path)["message"]
    assert "data fingerprint differs" in msg and "spec." not in msg.split("differs")[0]
    assert not any(s.startswith("model:") for s in said)
    assert _committed(run_dir) == before


def test_force_resumes_and_logging_fields_never_count(
    tmp_path: Path, first_run: tuple[Path, Path, dict[str, str]]
) -> None:
    data, _, _ = first_run
    # Only logging cadence and length changed: the same run, resumed without asking.
    code, result, _ = _run(_job(tmp_path, data, loggingSteps=2, maxSteps=6))
    assert code == 0 and result.resumed_from.endswith("step-000004") and result.steps == 6
    job = _job(tmp_path, data, learningRate=0.01, maxSteps=8)
    job.spec.run_policy.resume = "force"
    code, result, said = _run(job)
    assert code == 0 and result.resumed_from.endswith("step-000006") and result.steps == 8
    assert any("force" in s and "learningRate" in s for s in said), said


def test_no_resume_starts_fresh_and_keeps_the_old_checkpoints_aside(
    tmp_path: Path, first_run: tuple[Path, Path, dict[str, str]]
) -> None:
    data, run_dir, before = first_run
    job = _job(tmp_path, data, learningRate=0.01)
    code, result = execute(job, say=lambda _: None, resume=False)
    assert code == 0 and result.resumed_from is None and result.steps == 4
    (aside,) = (run_dir / "superseded").iterdir()
    kept = CheckpointStore(open_store(str(aside)))
    assert {r.name: (aside / "checkpoints" / r.name / "MANIFEST.json").read_text()
            for r in kept.list_committed()} == before  # fmt: skip
    for ref in kept.list_committed():  # every byte still verifies
        assert kept.fetch(ref, tmp_path / "verify" / ref.name).is_dir()
    # The fresh run's own checkpoints, with the new identity: an auto re-run resumes them.
    code, again, _ = _run(_job(tmp_path, data, learningRate=0.01, maxSteps=6))
    assert code == 0 and again.resumed_from.endswith("step-000004") and again.steps == 6


def test_a_recreated_finetunejob_starts_fresh_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator passes metadata.uid as KUBETUNE_JOB_UID: a new incarnation of the same
    name (same spec, same data) does not continue the old one's checkpoints."""
    data = write_qa_jsonl(tmp_path / "data.jsonl", 24)
    monkeypatch.setenv(Env.JOB_UID, "uid-a")
    code, first, _ = _run(_job(tmp_path, data))
    assert code == 0
    run_dir = Path(first.run_uri)
    before = _committed(run_dir)
    # A later attempt of the same incarnation resumes (the usual retry).
    monkeypatch.setenv(Env.ATTEMPT, "2")
    code, retry, _ = _run(_job(tmp_path, data, maxSteps=6))
    assert code == 0 and retry.resumed_from.endswith("step-000004")
    before = _committed(run_dir)
    # Deleted and re-applied: a new uid, attempt 1.
    monkeypatch.setenv(Env.JOB_UID, "uid-b")
    monkeypatch.setenv(Env.ATTEMPT, "1")
    code, second, said = _run(_job(tmp_path, data, maxSteps=6))
    assert code == 0 and second.resumed_from is None and second.steps == 6
    assert any("earlier FineTuneJob of this name (uid uid-a)" in s for s in said), said
    aside = run_dir / "superseded" / "uid-a"
    assert {p.name: (p / "MANIFEST.json").read_text()
            for p in (aside / "checkpoints").iterdir()} == before  # fmt: skip
    # runPolicy.resume: force continues another incarnation's checkpoints.
    monkeypatch.setenv(Env.JOB_UID, "uid-c")
    job = _job(tmp_path, data, maxSteps=8)
    job.spec.run_policy.resume = "force"
    code, third, _ = _run(job)
    assert code == 0 and third.resumed_from.endswith("step-000006") and third.steps == 8


@pytest.mark.slow
def test_kubetune_run_twice_with_other_data_refuses_then_no_resume(tmp_path: Path) -> None:
    """The real command twice with the same name and output: exit 64 and a one-line
    reason, no traceback; --no-resume then trains from step 0."""
    spec = json.loads(json.dumps(BASE_SPEC))
    spec["dataset"]["source"] = str(write_qa_jsonl(tmp_path / "data.jsonl", 24))
    spec["training"].update(SHORT)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "cli", "namespace": "test"}, "spec": spec,
    }))  # fmt: skip
    out = tmp_path / "runs"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBETUNE, "run", str(job_file), "--output", str(out), *args],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert run().returncode == 0
    write_qa_jsonl(tmp_path / "data.jsonl", 24, seed=9)
    refused = run()
    assert refused.returncode == 64, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if "refusing to resume" in x]
    assert "data fingerprint differs" in line and "kubetune run --no-resume" in line
    fresh = run("--no-resume")
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    report = json.loads((out / "test" / "cli" / "report" / "report.json").read_text())
    assert report["resumed_from"] is None
