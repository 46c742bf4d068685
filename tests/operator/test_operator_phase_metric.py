"""kubetune_job_phase_timestamp_seconds, what KubetuneJobFailed and KubetuneJobPendingTooLong
read: one series per FineTuneJob, the time it entered its phase taken from its own status, so a
restarted operator exports the same failure time again (no new alert) — the real operator
against the API emulator, scraped over HTTP.
"""

from __future__ import annotations

from datetime import datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kubetune_api.status import Condition, FineTuneJobStatus
from kubetune_operator.config import OperatorConfig
from kubetune_operator.metrics import OperatorMetrics
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.job_play import create_pods, set_running, set_terminated
from tests.support.kube.operator import NS, cond, load_ftj, status
from tests.support.net import free_port

JOBS = "batch/v1/jobs"
NAME = "kubetune_job_phase_timestamp_seconds"


def phase_series(port: int) -> dict[tuple[str, ...], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        (s.labels["namespace"], s.labels["finetunejob"], s.labels["phase"], s.labels["reason"]): (
            s.value
        )
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == NAME
    }


def config(port: int) -> OperatorConfig:
    return OperatorConfig(reconcile_interval=0.5, metrics_port=port, metrics_addr="127.0.0.1")


def test_failure_time_comes_from_status_and_survives_an_operator_restart(
    cluster: EmulatorServer,
) -> None:
    port = free_port()
    with run_operator(cluster, [NS], config(port)):
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="attempt 1's Job")
        pending = wait_for(lambda: phase_series(port), what="the Pending series")
        assert list(pending) == [(NS, "llama-lora", "Pending", "")]
        pods = create_pods(cluster, NS, "llama-lora-a1")
        for pod in pods:
            set_running(cluster, NS, pod, "127.0.0.1")
        set_terminated(cluster, NS, pods[0], 137, reason="OOMKilled")
        key = (NS, "llama-lora", "Failed", "OutOfMemory")
        first = wait_for(lambda: key in (s := phase_series(port)) and s, what="the Failed series")
        assert list(first) == [key]  # the Pending series is gone: one series per job
    failed_at = datetime.fromisoformat(cond(status(cluster), "Failed")["lastTransitionTime"])
    assert first[key] == failed_at.timestamp()
    # A new operator (helm upgrade, a pod replaced, a new leader) exports the same time.
    port = free_port()
    with run_operator(cluster, [NS], config(port)):
        again = wait_for(lambda: phase_series(port), what="the series after a restart")
    assert again == first


def test_phase_entered_prefers_the_phases_own_condition() -> None:
    def at(t: str, ctype: str, reason: str, value: str = "True") -> Condition:
        return Condition(type=ctype, status=value, reason=reason, last_transition_time=t)

    created = "2026-01-01T00:00:00Z"
    st = FineTuneJobStatus(phase="Failed", conditions=[
        at("2026-01-01T00:05:00Z", "Failed", "BadData"),
        at("2026-01-01T00:09:00Z", "Running", "PodsRunning", "False"),
    ])  # fmt: skip
    assert OperatorMetrics.phase_entered(st, created) == (1767225900.0, "BadData")
    # Pending has no condition of its own: the latest change (a retry), else creation.
    st = FineTuneJobStatus(phase="Pending", conditions=[
        at("2026-01-01T00:01:00Z", "Created", "JobCreated"),
        at("2026-01-01T00:03:00Z", "Restarting", "PodLost"),
    ])  # fmt: skip
    assert OperatorMetrics.phase_entered(st, created) == (1767225780.0, "")
    assert OperatorMetrics.phase_entered(FineTuneJobStatus(), created) == (1767225600.0, "")
