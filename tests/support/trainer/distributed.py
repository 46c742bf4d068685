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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.constants import Env, ExitCode
from tests.support.builders import MINIMAL_SPEC, job_doc, train_losses, write_qa_jsonl

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


STEPS = 6


TOLERANCE = 1e-4


def write_data(path: Path, n: int = 64) -> Path:
    """The engine tests' learnable question/answer rows (qa_records, seed 0)."""
    return write_qa_jsonl(path, n)


def spec(data: Path, output: str, micro: int = 1, **distributed: Any) -> dict[str, Any]:
    """The job every layout runs (namespace test, name dist)."""
    return job_doc(
        dict(
            model={"base": "builtin:tiny-llama"},
            # No dropout anywhere: the same batches must give the same updates.
            adapter={"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"]},
            dataset={
                "source": str(data),
                "format": "qa",
                "maxSeqLength": 64,
                "validation": {"fraction": 0.1},
            },
            training={
                "maxSteps": STEPS,
                "microBatchSize": micro,
                "learningRate": 0.02,
                "loggingSteps": 1,
                "scheduler": "constant",
                "seed": 7,
                "precision": "fp32",
                "saveSteps": 3,
            },
            evaluation={"enabled": False},
            distributed={"rendezvousTimeoutSeconds": 30, **distributed},
            output={"uri": output},
        ),
        "dist",
        "test",
    )


def run_dir(out: Path) -> Path:
    return out / "test" / "dist"


def losses(out: Path) -> dict[int, float]:
    return train_losses(run_dir(out))


def assert_same_curve(got: dict[int, float], ref: dict[int, float]) -> None:
    steps = max(ref)
    assert sorted(got) == sorted(ref) == list(range(1, steps + 1))
    worst = max(abs(got[s] - ref[s]) for s in ref)
    print(f"max |loss - reference loss| over {steps} steps: {worst:.2e}")
    assert worst < TOLERANCE, f"max |loss difference| {worst:.2e}: {got} vs {ref}"


def adapter_weights(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run_dir(out) / "adapter" / "adapter_model.safetensors"))


def launch_nodes(
    procs: Procs,
    tmp: Path,
    manifest: dict[str, Any],
    env: dict[str, str],
    port: int,
    output: Path | None = None,
    tag: str = "node",
    node_extra: Sequence[Mapping[str, str]] = (),
) -> list[subprocess.Popen[str]]:
    """`kubetune launch` once per node, with the operator's pod environment.


    Each simulated node gets its own cache (and so its own checkpoint staging folder), as
    separate pods would: files one node writes are not visible to the other.
    `node_extra[i]` adds variables to node i only (e.g. that pod's credentials).
    """
    dist = manifest["spec"]["distributed"]
    nnodes, nproc = dist.get("nodes", 1), dist.get("processesPerNode", 1)
    spec_file = write_json(tmp / f"{tag}-job.json", manifest)
    extra = {Env.OUTPUT_URI: str(output)} if output else {}
    nodes = []
    for i in range(nnodes):
        own = dict(extra) | dict(node_extra[i] if i < len(node_extra) else {})
        if nnodes > 1:
            own["KUBETUNE_CACHE"] = f"{env['KUBETUNE_CACHE']}-node{i}"
        node_env = operator_env(
            env, spec_file, nnodes, nproc, i, port, dist["rendezvousTimeoutSeconds"], **own
        )
        nodes.append(procs.start([KUBETUNE, "launch"], node_env, tmp / f"{tag}{i}.log"))
    return nodes


def wait_ok(nodes: list[subprocess.Popen[str]], tmp: Path, tag: str = "node") -> None:
    for i, p in enumerate(nodes):
        code = p.wait(600)
        assert code == ExitCode.OK, (tmp / f"{tag}{i}.log").read_text()[-3000:]
