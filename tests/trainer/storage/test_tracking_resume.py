"""A preempted `kubetune train` and its resumed attempt are one MLflow run, found through
the checkpoint itself (the run-prefix record is deleted in between)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kubetune_api.constants import ExitCode
from kubetune_api.loader import load_job
from kubetune_trainer.engine.callbacks import STATE_FILE
from kubetune_trainer.engine.main import execute
from kubetune_trainer.reporting.tracking import RUN_ID_FILE
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.servers.servers import MlflowServer
from tests.support.trainer.tracked_run import tiny_tracked_job

pytestmark = [pytest.mark.services, pytest.mark.slow]
STEPS = 24
KUBETUNE = str(Path(sys.executable).with_name("kubetune"))


def _job_file(tmp: Path, mlflow_uri: str) -> Path:
    tracking = {"mlflowUri": mlflow_uri, "experiment": "resumed-run"}
    return tiny_tracked_job(tmp, "resumed", STEPS, str(tmp / "out"), tracking)


def test_resumed_attempt_continues_the_mlflow_run_named_in_its_checkpoint(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = os.environ.get("KUBETUNE_CACHE", str(tmp_path / "cache"))
    for key, value in {
        "KUBETUNE_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip
    monkeypatch.delenv("KUBETUNE_OUTPUT_URI", raising=False)
    job_file = _job_file(tmp_path, mlflow_server.uri)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([KUBETUNE, "train", "--spec", str(job_file)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # attempt 1 is preempted after its first commit
        lines.append(line)
        if "checkpoint step 4 committed" in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=180) == ExitCode.PREEMPTED, "".join(lines[-30:])

    run_dir = tmp_path / "out" / "test" / "resumed"
    store = open_store(str(run_dir))
    latest = CheckpointStore(store).latest()
    assert latest is not None and latest.step < STEPS
    state = json.loads((run_dir / "checkpoints" / latest.name / STATE_FILE).read_text())
    run_id = state["sink_state"]["mlflow_run_id"]
    client = MlflowClient(mlflow_server.uri)
    first = client.get_run(run_id)
    assert first.data.tags["kubetune.attempt"] == "1"
    # Only the checkpoint can tell attempt 2 which run to continue now.
    (run_dir / RUN_ID_FILE).unlink()

    monkeypatch.setenv("KUBETUNE_ATTEMPT", "2")
    code, result = execute(load_job(job_file), say=lambda s: None)
    assert code == 0 and result is not None and result.resumed_from == latest.uri

    exp = client.get_experiment_by_name("resumed-run")
    (run,) = client.search_runs([exp.experiment_id])  # one run for both attempts
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["kubetune.attempt"] == "2"
    assert run.data.tags["kubetune.resumed_from"] == latest.uri
    steps = sorted({m.step for m in client.get_metric_history(run_id, "loss")})
    assert steps == list(range(1, STEPS + 1))
    record = json.loads((run_dir / RUN_ID_FILE).read_text())
    assert record["run_id"] == run_id  # written again for tools that look there
