"""The torchrun command for one node, built from the operator's pod environment."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from kubetune_api.spec import FineTuneJob, FineTuneJobSpec

from .contract import LaunchEnv, read_launch_env

TRAIN_MODULE = "kubetune_trainer.cli"
# Seconds torchrun gives ranks to checkpoint after SIGTERM before it SIGKILLs them: inside
# the pod's terminationGracePeriodSeconds (120, set by the operator) with room to exit.
SHUTDOWN_TIMEOUT = 90


def train_args(spec_file: str) -> list[str]:
    """Arguments after `python -m kubetune_trainer.cli`: what every rank runs."""
    return ["train", "--spec", spec_file]


def direct_command(spec_file: str) -> list[str]:
    """One process on one node needs no rendezvous: run `train` itself."""
    return [sys.executable, "-m", TRAIN_MODULE, *train_args(spec_file)]


def torchrun_args(launch: LaunchEnv, program: Sequence[str] | None = None) -> list[str]:
    """torchrun's arguments (without `torchrun` itself) for this node.

    `program` is what each rank runs (`-m MODULE ARGS...` or `SCRIPT ARGS...`); by default
    `-m kubetune_trainer.cli train --spec <spec file>`.
    """
    if program is None:
        program = ["-m", TRAIN_MODULE, *train_args(launch.spec_file)]
    t = launch.rdzv_timeout
    # c10d's rendezvous reads join_timeout (how long nodes wait for each other) and
    # read_timeout (how long a TCPStore client keeps dialling pod 0: pods start minutes
    # apart while images pull). `timeout` is the generic key torchrun documents.
    rdzv_conf = f"timeout={t},join_timeout={t},read_timeout={t}"
    # Node 0 hosts the rendezvous store. Without is_host every node whose name resolves
    # to the endpoint (all of them, on one host) races to bind the port.
    rdzv_conf += f",is_host={'true' if launch.node_rank == 0 else 'false'}"
    return [
        "--nnodes", str(launch.nnodes),
        "--nproc-per-node", str(launch.nproc_per_node),
        # c10d assigns global ranks itself (it logs that --node-rank is ignored); the
        # flag stays so `ps` shows which pod this is, and node 0 hosts (is_host above).
        "--node-rank", str(launch.node_rank),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"{_host_for_url(launch.master_addr)}:{launch.master_port}",
        "--rdzv-id", launch.rdzv_id,
        "--rdzv-conf", rdzv_conf,
        # The operator owns retries (a new attempt resumes from the last checkpoint);
        # an in-pod restart would race the other nodes and hide the failure.
        "--max-restarts", "0",
        "--monitor-interval", "1",
        "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
        *program,
    ]  # fmt: skip


def torchrun_command(env: Mapping[str, str], spec: FineTuneJob | FineTuneJobSpec) -> list[str]:
    """`torchrun ... -m kubetune_trainer.cli train --spec $KUBETUNE_SPEC_FILE` for this pod.

    Pure: reads only `env` and `spec`; raises LaunchEnvError naming a missing/invalid variable.
    """
    return ["torchrun", *torchrun_args(read_launch_env(env, spec))]


def _host_for_url(host: str) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]"  # an IPv6 literal needs brackets before :port
    return host
