"""Preemption and resume: SIGTERM to a real `kubetune train` leaves a verified checkpoint
and exit code 76; the resumed run skips a torn checkpoint and reproduces the
uninterrupted loss curve."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune_api.constants import ExitCode
from kubetune_api.loader import load_job
from kubetune_trainer.engine.main import execute
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.builders import BASE_SPEC, make_job, prepared, write_qa_jsonl

KUBETUNE = str(Path(sys.executable).with_name("kubetune"))


def _job_file(tmp: Path, out: Path, name: str = "pre") -> Path:
    spec = json.loads(json.dumps(BASE_SPEC))
    spec["dataset"]["source"] = str(write_qa_jsonl(tmp / "data.jsonl", 80))
    spec["dataset"]["validation"] = {"fraction": 0.2}
    spec["training"].update(maxSteps=30, saveSteps=5, keepLastCheckpoints=2)
    spec["output"] = {"uri": str(out)}
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "test"},
        "spec": spec,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [
        json.loads(x)
        for x in (run_dir / "report" / "metrics.jsonl").read_text().split("\n")
        if x.strip()
    ]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
def test_sigterm_checkpoint_then_resume_matches_uninterrupted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    job_file = _job_file(tmp_path, out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [KUBETUNE, "train", "--spec", str(job_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:  # signal right after the first committed checkpoint
        lines.append(line)
        if "checkpoint step 5 committed" in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=120) == ExitCode.PREEMPTED == 76, "".join(lines[-30:])

    run_dir = out / "test" / "pre"
    ckpts = CheckpointStore(open_store(str(run_dir)))
    latest = ckpts.latest()
    assert latest is not None and 5 < latest.step < 30  # saved at the step SIGTERM hit
    assert ckpts.fetch(latest, tmp_path / "verify").is_dir()  # every sha256 matches
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == 76 and summary["phase"] == "training"
    assert summary["checkpoint"] == latest.uri and summary["step"] == latest.step
    assert not (run_dir / "adapter").exists()

    # A newer checkpoint whose upload never finished (no manifest) must be skipped.
    torn = run_dir / "checkpoints" / "step-000999"
    shutil.copytree(run_dir / "checkpoints" / latest.name, torn)
    (torn / "MANIFEST.json").unlink()

    job = load_job(job_file)
    with caplog.at_level(logging.WARNING):
        code, resumed = execute(job, say=lambda s: None)
    assert code == 0 and resumed is not None
    assert resumed.resumed_from == latest.uri
    assert "skipping torn checkpoint" in caplog.text and "step-000999" in caplog.text
    assert resumed.steps == 30

    ref_job = load_job(_job_file(tmp_path, tmp_path / "ref", "pre"))
    code, ref = execute(ref_job, say=lambda s: None)
    assert code == 0
    got, want = _losses(run_dir), _losses(tmp_path / "ref" / "test" / "pre")
    assert sorted(got) == sorted(want) == list(range(1, 31))
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-5), step
    assert resumed.tuned_eval_loss == pytest.approx(ref.tuned_eval_loss, abs=1e-5)


def test_a_finished_run_whose_adapter_was_lost_trains_no_step_more(tmp_path: Path) -> None:
    # 48 examples unpacked, 4 a batch: 12 steps an epoch, so step 5 ends mid-epoch (a resumed
    # Trainer would go on to step 6 before noticing it has reached maxSteps).
    job = make_job(tmp_path / "out", name="done", dataset={"packing": "none"},
                   training={"maxSteps": 5, "saveSteps": 5})  # fmt: skip
    code, first = execute(job, prepared=prepared(), say=lambda s: None)
    assert code == 0 and first is not None and first.steps == 5
    run_dir = Path(first.run_uri)
    rows_before = (run_dir / "report" / "metrics.jsonl").read_text().splitlines()
    # The attempt died after its last commit, before the adapter was saved.
    shutil.rmtree(run_dir / "adapter")

    said: list[str] = []
    code, again = execute(job, prepared=prepared(), say=said.append)
    assert code == 0 and again is not None
    assert again.resumed_from is not None and again.resumed_from.endswith("step-000005")
    assert any("already reached" in s and "no training" in s for s in said), said
    assert again.steps == first.steps == 5
    assert again.tuned_eval_loss == pytest.approx(first.tuned_eval_loss, abs=1e-6)
    assert again.base_eval_loss == pytest.approx(first.base_eval_loss, abs=1e-6)
    assert again.final_train_loss == pytest.approx(first.final_train_loss, abs=1e-6)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000005"]
    rows = [json.loads(x) for x in (run_dir / "report" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 5
    assert len(rows) == len(rows_before)  # nothing replayed: the final eval row is there already
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["results"]["steps"] == 5 and report["adapter"]["sha256"] == again.adapter.sha256
    assert again.adapter.sha256 == first.adapter.sha256  # the same weights, saved again
    # Throughput over every attempt's rows: the first attempt's, as nothing was trained since.
    tps = again.report["results"]["tokens_per_second"]
    assert tps is not None and tps == pytest.approx(first.report["results"]["tokens_per_second"])


def test_a_sigterm_handled_inside_the_step_end_collective_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI: both ranks logged the SIGTERM while waiting in the step end's any_rank, then its
    # answer (False: what they had sent) overwrote the flag, and they trained to the end.
    import time

    from transformers import TrainerControl

    from kubetune_trainer import distributed
    from kubetune_trainer.engine.callbacks import Preemption, PreemptionCallback

    def collective(flag: bool) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the rank waits for the others
        time.sleep(0.05)  # the handler runs here, on the main thread
        return flag  # what every rank sent before it: no stop yet

    preemption = Preemption()
    preemption.install()
    try:
        callback = PreemptionCallback(preemption)
        monkeypatch.setattr(distributed, "any_rank", collective)
        first = callback.on_step_end(None, None, TrainerControl())
        assert preemption.requested and not first.should_training_stop
        monkeypatch.setattr(distributed, "any_rank", lambda flag: flag)
        second = callback.on_step_end(None, None, TrainerControl())  # the next step's end
        assert second.should_training_stop and second.should_save
    finally:
        preemption.uninstall()
