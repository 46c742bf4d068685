"""The local backend end to end, with real processes: `kubetune submit` queues, a detached
worker runs one job at a time, `jobs wait/logs/metrics/list` follow them by ID."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from kubetune_trainer.jobs import Client
from kubetune_trainer.jobs.lock import worker_pid
from tests.support.trainer.local_jobs import KUBETUNE, cli, poll, write_job


@pytest.mark.slow
def test_two_jobs_one_slot_run_in_turn_and_both_succeed(home: Path, tmp_path: Path) -> None:
    first = cli("submit", str(write_job(tmp_path, "first")))
    second = cli("submit", str(write_job(tmp_path, "second")), "-o", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "test/first"
    assert json.loads(second.stdout)["id"] == "test/second"
    assert worker_pid(home), "submit started a worker"

    client = Client()
    poll(lambda: client.get("test/first").phase == "Running", what="first running")
    assert client.get("test/second").phase == "Pending"  # one slot: the second waits

    follow = subprocess.Popen([*KUBETUNE, "jobs", "logs", "test/first", "--follow"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    waited = cli("jobs", "wait", "test/second", "--timeout", "240", "-o", "json", timeout=300)
    assert waited.returncode == 0, waited.stderr
    final = json.loads(waited.stdout)
    assert final["id"] == "test/second" and final["phase"] == "Succeeded"
    assert final["step"] == 4 and final["checkpoint"].endswith("step-000004")

    out, _ = follow.communicate(timeout=30)  # --follow ended on its own with the job
    assert follow.returncode == 0 and "adapter: " in out and "report:" in out

    first_info = client.get("test/first")
    assert first_info.phase == "Succeeded" and first_info.finished_at <= final["started_at"]
    listed = cli("jobs", "list", "-o", "json")
    assert [j["id"] for j in json.loads(listed.stdout)] == ["test/first", "test/second"]
    assert re.search(r"^test/first +Succeeded +Completed", cli("jobs", "list").stdout, re.M)

    metrics = json.loads(cli("jobs", "metrics", "test/first", "-o", "json").stdout)
    assert [r["step"] for r in metrics["rows"] if "loss" in r] == [1, 2, 3, 4]
    assert metrics["latest"]["step"] == 4 and metrics["checkpoint"]["step"] == 4
    assert (tmp_path / "runs" / "test" / "first" / "adapter").is_dir()
