"""Jobs API tests: a kubetune home of their own; any worker they started is stopped after."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def home(trainer_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """KUBETUNE_HOME in tmp_path, one slot, cwd in tmp_path (the jobs' relative paths)."""
    root = tmp_path / "home"
    monkeypatch.setenv("KUBETUNE_HOME", str(root))
    monkeypatch.setenv("KUBETUNE_SLOTS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    yield root
    from kubetune_trainer.jobs.lock import worker_pid

    pid = worker_pid(root) if root.exists() else None
    # The worker this test's submit started (not this process playing one): stop it.
    if pid and pid > 0 and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while worker_pid(root) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
