"""Every job is an entry of one scheduler task (schedule.py), not a kopf daemon: a deletion
must end a waiting job's entry promptly, and shutdown must stop the scheduler cleanly."""

from __future__ import annotations

import logging

import pytest

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import NS, load_ftj

JOBS = "batch/v1/jobs"


def forced(caplog: pytest.LogCaptureFixture) -> list[str]:
    """kopf's words when a task of an object did not exit by itself and was cancelled."""
    words = ("exit by force", "is cancelled", "did not exit in time")
    records = [r for r in caplog.records if r.name == "kopf.objects"]
    return [r.getMessage() for r in records if any(w in r.getMessage() for w in words)]


def test_deletion_and_shutdown_end_a_waiting_job(
    cluster: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf")
    # A one-hour interval: only a poke makes these jobs due again.
    config = OperatorConfig(reconcile_interval=3600, status_interval=0.5, metrics_port=None)
    with run_operator(cluster, [NS], config):
        memo = cluster.op_memo
        cluster.create(FTJ, load_ftj())
        other = load_ftj()
        other["metadata"]["name"] = "other"
        cluster.create(FTJ, other)
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="llama-lora's Job")
        wait_for(lambda: cluster.get(JOBS, NS, "other-a1"), what="other's Job")
        scheduler = memo.scheduler
        assert {(NS, "llama-lora"), (NS, "other")} <= set(scheduler.entries)
        cluster.delete(FTJ, NS, "llama-lora")
        # Gone within wait_for's limit, far inside the hour: only the deletion's poke can have
        # made its entry due (no elapsed-time bound of our own: a loaded CI machine is slow).
        wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the FineTuneJob gone")
        # Its entry ended; its state is gone with it.
        assert (NS, "llama-lora") not in scheduler.entries
        assert (NS, "llama-lora") not in memo.paces
        assert not forced(caplog), forced(caplog)
        assert (NS, "other") in scheduler.entries  # still waiting
        caplog.clear()
    # Shutdown: the cleanup handler stops the scheduler; kopf has nothing to cancel (a task
    # that did not end by itself would be in `forced`).
    assert scheduler.in_flight() == 0
    assert scheduler._task is not None and scheduler._task.done()
    assert not forced(caplog), forced(caplog)
