"""A job's loop sleeps on one future (wake.py), which kopf's `stopped` flag does not end:
deletion and shutdown must still end a sleeping loop promptly and cleanly."""

from __future__ import annotations

import logging
import time

import pytest

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import NS, load_ftj

JOBS = "batch/v1/jobs"


def forced(caplog: pytest.LogCaptureFixture) -> list[str]:
    """kopf's words when a daemon did not exit by itself and had to be cancelled."""
    words = ("exit by force", "is cancelled", "did not exit in time")
    records = [r for r in caplog.records if r.name == "kopf.objects"]
    return [r.getMessage() for r in records if any(w in r.getMessage() for w in words)]


def test_deletion_and_shutdown_end_a_sleeping_loop(
    cluster: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf")
    # A one-hour interval: only a poke or kopf can end these sleeps.
    config = OperatorConfig(reconcile_interval=3600, status_interval=0.5, metrics_port=None)
    with run_operator(cluster, [NS], config):
        memo = cluster.op_memo
        cluster.create(FTJ, load_ftj())
        other = load_ftj()
        other["metadata"]["name"] = "other"
        cluster.create(FTJ, other)
        wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="llama-lora's Job")
        wait_for(lambda: cluster.get(JOBS, NS, "other-a1"), what="other's Job")
        assert {(NS, "llama-lora"), (NS, "other")} <= set(memo.pokes)
        t0 = time.monotonic()
        cluster.delete(FTJ, NS, "llama-lora")
        wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="the FineTuneJob gone")
        assert time.monotonic() - t0 < 10
        # Its loop ended by itself, woken by the deletion: kopf did not cancel it.
        assert (NS, "llama-lora") not in memo.pokes
        assert not forced(caplog), forced(caplog)
        assert (NS, "other") in memo.pokes  # still asleep
        caplog.clear()
        t0 = time.monotonic()
    # Shutdown: kopf sets `stopped`, then cancels the sleeping daemon, which ends quietly.
    assert time.monotonic() - t0 < 10
    assert (NS, "other") not in memo.pokes
    assert not [m for m in forced(caplog) if "exit by force" not in m], forced(caplog)
