"""`kubetune run` on one machine with several processes or simulated nodes.

Each simulated node is a `kubetune launch` child with exactly the environment the
operator gives a pod (JOB_COMPLETION_INDEX, KUBETUNE_MASTER_ADDR=127.0.0.1, ...), so a
local run exercises the same launcher, rendezvous and exit-code path as the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubetune_api.constants import Env
from kubetune_api.loader import load_job
from kubetune_api.spec import FineTuneJob

from .exitcodes import node_exit_code


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the rendezvous binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def node_env(job: FineTuneJob, spec_file: str, node_rank: int, port: int,
             attempt: int = 1) -> dict[str, str]:  # fmt: skip
    """The launcher variables the operator sets in pod `node_rank` (docs/distributed.md)."""
    dist = job.spec.distributed
    return {
        Env.SPEC_FILE: spec_file,
        Env.NAMESPACE: job.metadata.namespace,
        Env.JOB_NAME: job.metadata.name,
        Env.ATTEMPT: str(attempt),
        Env.NNODES: str(dist.nodes),
        Env.NPROC_PER_NODE: str(dist.processes_per_node),
        Env.NODE_RANK: str(node_rank),
        Env.MASTER_ADDR: "127.0.0.1",
        Env.MASTER_PORT: str(port),
        Env.RDZV_TIMEOUT: str(dist.rendezvous_timeout_seconds),
    }


def write_spec(job: FineTuneJob, directory: str | Path) -> str:
    """The resolved FineTuneJob as JSON, as the operator's ConfigMap mounts it."""
    path = Path(directory) / "finetunejob.json"
    path.write_text(json.dumps(job.to_manifest(), indent=2), encoding="utf-8")
    return str(path)


def launch_nodes(job: FineTuneJob, *, env: Mapping[str, str] | None = None,
                 port: int | None = None, attempt: int = 1) -> int:  # fmt: skip
    """Start one `kubetune launch` per node of `job`, wait for all; the job's exit code."""
    base = dict(os.environ if env is None else env)
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="kubetune-launch-") as tmp:
        spec_file = write_spec(job, tmp)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "kubetune_trainer.cli", "launch"],
                env=base | node_env(job, spec_file, rank, port, attempt),
                # Own process group per node: stopping a node stops its ranks too.
                start_new_session=True,
            )
            for rank in range(job.spec.distributed.nodes)
        ]
        try:
            codes = _wait_all(procs, grace=job.spec.distributed.rendezvous_timeout_seconds + 30)
        except BaseException:
            for p in procs:
                _stop(p)
            raise
    return node_exit_code(codes)


def local_launch(
    job_path: str | Path,
    overrides: Sequence[str] = (),
    *,
    output: str | None = None,
    resume: bool = True,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> int:
    """Train `job_path` (with `--set` overrides) on this machine under torchrun.

    For `kubetune run` when spec.distributed asks for more than one process or node.
    `output` overrides the artifact root (KUBETUNE_OUTPUT_URI for every rank); `resume`
    False starts fresh (runPolicy.resume: never), as `kubetune train --no-resume` does. Returns
    the job's exit code (kubetune_api.ExitCode): 0, or the most telling failure.
    """
    job = load_job(job_path, list(overrides))
    base = dict(os.environ if env is None else env)
    if output:
        base[Env.OUTPUT_URI] = output
    if not resume:  # rank 0 sets earlier checkpoints aside (engine/resume.py)
        job.spec.run_policy.resume = "never"
    return launch_nodes(job, env=base, port=port)


def _wait_all(procs: list[subprocess.Popen[bytes]], grace: float) -> list[int]:
    """Wait for every node; once one fails, the rest get `grace` seconds to fail too.

    Survivors normally notice the lost peer and exit RETRYABLE themselves; the grace is
    the backstop for one stuck in a rendezvous that can no longer complete.
    """
    deadline: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [int(c) for c in codes if c is not None]
        if deadline is None and any(c not in (None, 0) for c in codes):
            deadline = time.monotonic() + grace
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                _stop(p)
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
