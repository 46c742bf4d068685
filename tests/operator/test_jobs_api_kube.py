"""`kubetune submit/jobs --backend kubernetes` and `Client(backend="kubernetes")` against the
API emulator with the real operator running; the tests play the Job controller and kubelet
(job_play) and write the pods' logs the log API serves."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from prometheus_client import Gauge

from kubetune_api.termination import TerminationSummary
from kubetune_trainer.jobs import Client, UnknownJobError
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import create_pods, set_job_status, set_running, set_terminated
from tests.support.kube.operator import NS, load_ftj

CLI = [sys.executable, "-m", "kubetune_trainer.cli"]


def kt(cluster: EmulatorServer, *args: str) -> subprocess.CompletedProcess[str]:
    opts = ["--backend", "kubernetes", "--kubeconfig", str(cluster.kubeconfig)]
    return subprocess.run([*CLI, *args, *opts], capture_output=True, text=True, timeout=60)


def _job_file(tmp_path: Path, name: str, metrics_port: int | None = None) -> Path:
    doc = load_ftj()
    doc["metadata"]["name"] = name
    if metrics_port:
        doc["spec"]["metrics"] = {"port": metrics_port}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _pods_of(cluster: EmulatorServer, name: str) -> list[dict]:
    return cluster.list("v1/pods", NS, labels=f"kubetune.io/job={name}")


def test_submit_poll_logs_metrics_to_success(
    operator: EmulatorServer, tmp_path: Path, rank0_metrics: tuple[int, dict[str, Gauge]]
) -> None:
    cluster = operator
    port, gauges = rank0_metrics  # tests/support/kube/operator.py
    gauges["kubetune_train_step"].set(40)
    gauges["kubetune_train_loss"].set(1.25)
    got = kt(cluster, "submit", str(_job_file(tmp_path, "llama-lora", port)), "-o", "json")
    assert got.returncode == 0, got.stderr
    job_id = json.loads(got.stdout)["id"]
    assert job_id == f"{NS}/llama-lora"
    client = Client("kubernetes", kubeconfig=str(cluster.kubeconfig), namespace=NS)
    assert [j.id for j in client.list()] == [job_id]

    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")
    pods = create_pods(cluster, NS, "llama-lora-a1")
    logs = cluster.emu.pod_logs
    logs[(NS, pods[0]["metadata"]["name"])] = "rank 0: loading the model\n"
    logs[(NS, pods[1]["metadata"]["name"])] = "rank 1: waiting for rank 0\n"
    for pod in pods:
        set_running(cluster, NS, pod, "127.0.0.1")
    set_job_status(cluster, NS, "llama-lora-a1", active=2)
    assert client.wait(job_id, until={"Running"}, timeout=20).phase == "Running"
    live = client.metrics(job_id)["live"]  # rank 0's /metrics, read directly (reachable here)
    assert set(live) == set(gauges)  # every sample rank 0 serves (the operator's names)
    assert (live["kubetune_train_step"], live["kubetune_train_loss"]) == (40.0, 1.25)

    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.extend(client.logs(job_id, follow=True)))
    follower.start()
    wait_for(lambda: followed, what="the first log lines")
    logs[(NS, pods[0]["metadata"]["name"])] += "rank 0: step 100 loss 0.8\n"
    summary = TerminationSummary(phase="done", message="trained 100 steps", step=100, loss=0.8,
                                 exit_code=0, checkpoint="s3://artifacts/kubetune/team-a/"
                                 "llama-lora/checkpoints/step-000100")  # fmt: skip
    set_terminated(cluster, NS, pods[0], 0, summary.to_line())
    set_terminated(cluster, NS, pods[1], 0)
    set_job_status(cluster, NS, "llama-lora-a1", active=0, succeeded=2,
                   conditions=[{"type": "Complete", "status": "True"}])  # fmt: skip
    final = client.wait(job_id, timeout=20)
    assert final.phase == "Succeeded" and final.checkpoint.endswith("step-000100")
    follower.join(10)
    assert not follower.is_alive(), "logs --follow must end when the job ends"
    assert "".join(followed) == "rank 0: loading the model\nrank 0: step 100 loss 0.8\n"

    got = kt(cluster, "jobs", "get", job_id, "-o", "json")
    assert got.returncode == 0, got.stderr
    info = json.loads(got.stdout)
    assert info["phase"] == "Succeeded" and info["backend"] == "kubernetes"
    assert info["step"] == 100 and info["max_steps"] == 100
    rank1 = kt(cluster, "jobs", "logs", job_id, "--rank", "1")
    assert rank1.stdout == "rank 1: waiting for rank 0\n"
    metrics = json.loads(kt(cluster, "jobs", "metrics", job_id, "-o", "json").stdout)
    assert metrics["latest"]["step"] == 100 and metrics["latest"]["loss"] == 0.8
    again = kt(cluster, "submit", str(_job_file(tmp_path, "llama-lora")))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_cancel_deletes_the_finetunejob_and_its_job_and_pods(
    operator: EmulatorServer, tmp_path: Path
) -> None:
    cluster = operator
    client = Client("kubernetes", kubeconfig=str(cluster.kubeconfig), namespace=NS)
    ref = client.submit(_job_file(tmp_path, "to-cancel"))
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "to-cancel-a1"), what="the Job")
    for pod in create_pods(cluster, NS, "to-cancel-a1"):
        set_running(cluster, NS, pod, "127.0.0.1")
    assert len(_pods_of(cluster, "to-cancel")) == 2

    got = kt(cluster, "jobs", "cancel", ref.id, "-o", "json")
    assert got.returncode == 0, got.stderr and json.loads(got.stdout)["phase"] == "Cancelled"
    wait_for(lambda: cluster.get(FTJ, NS, "to-cancel") is None, what="the FineTuneJob gone")
    assert cluster.get("batch/v1/jobs", NS, "to-cancel-a1") is None
    assert _pods_of(cluster, "to-cancel") == []
    with pytest.raises(UnknownJobError, match="no FineTuneJob"):
        ref.get()


def test_unknown_id_and_invalid_spec_are_refused(operator: EmulatorServer, tmp_path: Path) -> None:
    got = kt(operator, "jobs", "get", f"{NS}/nope")
    assert got.returncode == 1 and f"no FineTuneJob {NS}/nope" in got.stderr
    bad = _job_file(tmp_path, "bad")
    bad.write_text(bad.read_text().replace("maxSteps: 100", "maxSteps: -3"))
    got = kt(operator, "submit", str(bad))
    assert got.returncode == 64 and "training.maxSteps" in got.stderr
    assert operator.get(FTJ, NS, "bad") is None
