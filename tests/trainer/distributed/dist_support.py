"""Fixtures for the distributed tests: real torchrun processes over gloo on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.distributed.local import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# The real servers (tests.fixtures) are imported from the repo root, which a bare `pytest`
# does not put on sys.path (`python -m pytest` from the root does).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# How long a survivor may take, beyond the configured rendezvous/collective timeout, to
# exit after a peer was killed: its rank notices (at once when the socket closes, else
# after the timeout), the torchrun agent sees it (1 s monitor interval) and tears down,
# the launcher maps the codes and the interpreter exits. Measured 2-3 s here; the rest
# is room for a busy 2-core machine.
EXIT_MARGIN_SECONDS = 30


def job_manifest(name: str = "dist", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"base": "builtin:tiny-llama"},
        "dataset": {"source": "data.jsonl", "format": "instruction"},
    }
    base.update(spec)
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": base,
    }


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


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # One model cache for the session: tiny-llama is built once per node.
            "KUBETUNE_CACHE": str(tmp_path_factory.mktemp("kubetune-cache")),
            "KUBETUNE_TERMINATION_LOG": str(tmp_path_factory.mktemp("term") / "termination-log"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "DS_ACCELERATOR": "cpu",
            # DeepSpeed compiles its CPU ops once (~30 s); every test and run shares the result.
            "TORCH_EXTENSIONS_DIR": str(Path.home() / ".cache/kubetune/torch_extensions"),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for var in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "KUBETUNE_OUTPUT_URI",
    ):
        env.pop(var, None)
    return env


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
