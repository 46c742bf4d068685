"""ETA from the start: before rank 0's first step the operator has no step rate, so
status.progress.etaSeconds is the trainer's own estimate (kubetune_train_eta_seconds,
exported before the first step by engine/eta.py); from the second scrape with steps done
the operator's observed rate takes over. The real operator over HTTP against the emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from kubetune_operator.progress import RateSample, to_progress
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import create_pods, set_job_status, set_running
from tests.support.kube.operator import NS, load_ftj, status
from tests.support.net import free_port


@pytest.fixture
def rank0() -> Iterator[tuple[int, dict[str, Gauge]]]:
    reg = CollectorRegistry()
    names = ["kubetune_train_step", "kubetune_train_total_steps", "kubetune_train_eta_seconds"]
    gauges = {n: Gauge(n, n, registry=reg) for n in names}
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    yield port, gauges
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_trainers_start_estimate_is_the_eta_before_step_one(
    operator: EmulatorServer, rank0: tuple[int, dict[str, Gauge]]
) -> None:
    cluster = operator
    port, gauges = rank0
    gauges["kubetune_train_total_steps"].set(100)
    gauges["kubetune_train_step"].set(0)
    gauges["kubetune_train_eta_seconds"].set(321.0)
    cluster.create(FTJ, load_ftj(metrics={"port": port}))
    # The Job itself, not status.jobName: the status may be written before the Job is.
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")
    for pod in create_pods(cluster, NS, "llama-lora-a1"):
        set_running(cluster, NS, pod, "127.0.0.1")
    set_job_status(cluster, NS, "llama-lora-a1", active=2)
    st = wait_for(
        lambda: (s := status(cluster)).get("progress", {}).get("etaSeconds") and s, what="ETA"
    )
    assert st["phase"] == "Running" and st["progress"]["etaSeconds"] == 321.0
    assert st["progress"]["totalSteps"] == 100 and not st["progress"].get("step")


def test_an_observed_rate_wins_over_the_trainers_estimate() -> None:
    first = RateSample(100.0, 0)
    before = to_progress({"step": 0, "total_steps": 100, "eta": 321.0}, 100.0, first)
    assert before.eta_seconds == 321.0
    after = to_progress({"step": 50, "total_steps": 100, "eta": 999.0}, 110.0, first)
    assert after.eta_seconds == 10.0  # 50 steps in 10 s, 50 to go
    done = to_progress({"step": 100, "total_steps": 100, "eta": 5.0}, 120.0, RateSample(120, 100))
    assert done.eta_seconds is None
