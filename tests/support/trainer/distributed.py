"""Helpers for the distributed tests: real torchrun processes over gloo on 127.0.0.1 (their
fixtures are in tests/trainer/distributed/conftest.py)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import MINIMAL_SPEC, job_doc

REPO = Path(__file__).resolve().parents[3]
HERE = REPO / "tests" / "trainer" / "distributed"  # the *_program.py scripts the tests run

# How long a survivor may take, beyond the configured rendezvous/collective timeout, to
# exit after a peer was killed: its rank notices (at once when the socket closes, else
# after the timeout), the torchrun agent sees it (1 s monitor interval) and tears down,
# the launcher maps the codes and the interpreter exits. Measured 2-3 s here; the rest
# is room for a busy 2-core machine.
EXIT_MARGIN_SECONDS = 30


def job_manifest(name: str = "dist", **spec: Any) -> dict[str, Any]:
    """A manifest over MINIMAL_SPEC; each given section replaces the base's whole."""
    return job_doc({**copy.deepcopy(MINIMAL_SPEC), **spec}, name, "default")


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


class Procs:
    """Processes a test started, each in its own process group; all stopped at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, cmd: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        out = log.open("w")
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=cwd,
        )
        self.started.append(proc)
        return proc

    def kill_group(self, proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


PYTHON = sys.executable
KUBETUNE = str(Path(sys.executable).with_name("kubetune"))


def operator_env(
    base: Mapping[str, str],
    spec_file: Path,
    nnodes: int,
    nproc: int,
    index: int,
    port: int,
    timeout: int,
    **extra: str,
) -> dict[str, str]:
    """Exactly what the operator sets in pod `index` (docs/distributed.md), plus extras."""
    from kubetune_api.constants import Env

    return (
        dict(base)
        | {
            Env.SPEC_FILE: str(spec_file),
            Env.NAMESPACE: "test",
            Env.JOB_NAME: "dist",
            Env.ATTEMPT: "1",
            Env.NNODES: str(nnodes),
            Env.NPROC_PER_NODE: str(nproc),
            Env.NODE_RANK: str(index),
            Env.MASTER_ADDR: "127.0.0.1",
            Env.MASTER_PORT: str(port),
            Env.RDZV_TIMEOUT: str(timeout),
        }
        | extra
    )


def wait_bounded(
    proc: subprocess.Popen[str], killed_at: float, timeout: int, log: Path
) -> tuple[int, float]:
    """Wait for a survivor to exit within `timeout` + EXIT_MARGIN_SECONDS of `killed_at`.

    Returns (exit code, seconds from the kill to the exit); fails the test past the bound.
    """
    bound = timeout + EXIT_MARGIN_SECONDS
    try:
        code = proc.wait(max(0.0, killed_at + bound - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"survivor still running {bound} s after the peer was killed (timeout {timeout} s "
            f"+ {EXIT_MARGIN_SECONDS} s margin):\n{log.read_text()[-3000:]}"
        )
    elapsed = time.monotonic() - killed_at
    print(f"survivor exited {code} {elapsed:.1f} s after the kill (bound {bound} s)")
    assert elapsed <= bound
    return code, elapsed
