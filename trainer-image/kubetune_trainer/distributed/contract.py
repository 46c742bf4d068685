"""The pod environment the operator sets, read and checked in one place.

`kubetune launch` trusts nothing it did not check here: every variable is parsed, its
range checked, and cross-checked against the spec the operator mounted. An error names
the variable and what the operator should have set, so a broken pod template is found
from the pod log alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubetune_api.constants import Env
from kubetune_api.spec import FineTuneJob, FineTuneJobSpec

from ..errors import ConfigError

# A host name or an IPv4/IPv6 literal; no scheme, no port, no spaces.
_HOST = re.compile(
    r"^(\[[0-9a-fA-F:]+\]"  # [IPv6]
    r"|[0-9a-fA-F:]*:[0-9a-fA-F:]+"  # IPv6
    r"|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$"  # DNS name or IPv4
)
_RDZV_ID = re.compile(r"[^A-Za-z0-9_-]+")


class LaunchEnvError(ConfigError):
    """A launcher variable is missing or invalid: the pod template is broken (permanent)."""


@dataclass(frozen=True)
class LaunchEnv:
    """What one node needs to join the job's torchrun rendezvous."""

    spec_file: str
    deepspeed: bool  # DeepSpeed needs torchrun's environment even for one process
    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int
    rdzv_timeout: int
    rdzv_id: str

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def direct(self) -> bool:
        """One process without DeepSpeed: `train` can run without torchrun."""
        return self.world_size == 1 and not self.deepspeed


def _spec_of(job: FineTuneJob | FineTuneJobSpec) -> FineTuneJobSpec:
    return job.spec if isinstance(job, FineTuneJob) else job


def needs_torchrun(job: FineTuneJob | FineTuneJobSpec) -> bool:
    """More than one process, or DeepSpeed (which fails on mpi4py without torchrun's env)."""
    dist = _spec_of(job).distributed
    return dist.world_size > 1 or dist.deepspeed != "none"


def _int(env: Mapping[str, str], name: str, lo: int, hi: int, should: str,
         default: int | None = None) -> int:  # fmt: skip
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        if default is not None:
            return default
        raise LaunchEnvError(f"{name} is not set; the operator should set it to {should}")
    try:
        value = int(raw.strip())
    except ValueError:
        raise LaunchEnvError(
            f"{name}={raw!r} is not an integer; the operator should set it to {should}"
        ) from None
    if not lo <= value <= hi:
        raise LaunchEnvError(
            f"{name}={value} is out of range {lo}..{hi}; the operator should set it to {should}"
        )
    return value


def read_launch_env(env: Mapping[str, str], job: FineTuneJob | FineTuneJobSpec) -> LaunchEnv:
    """Parse and check the launcher variables (kubetune_api.constants.Env) against the spec.

    Required: KUBETUNE_SPEC_FILE, KUBETUNE_NNODES, KUBETUNE_NPROC_PER_NODE; on more than one
    node also JOB_COMPLETION_INDEX and KUBETUNE_MASTER_ADDR. KUBETUNE_MASTER_PORT and
    KUBETUNE_RDZV_TIMEOUT default to the spec's distributed.masterPort and
    distributed.rendezvousTimeoutSeconds.
    """
    dist = _spec_of(job).distributed
    spec_file = env.get(Env.SPEC_FILE, "").strip()
    if not spec_file:
        raise LaunchEnvError(
            f"{Env.SPEC_FILE} is not set; the operator should set it to the mounted "
            "FineTuneJob JSON (e.g. /etc/kubetune/finetunejob.json)"
        )
    nnodes = _int(env, Env.NNODES, 1, 256, f"spec.distributed.nodes ({dist.nodes})")
    nproc = _int(
        env, Env.NPROC_PER_NODE, 1, 64,
        f"spec.distributed.processesPerNode ({dist.processes_per_node})",
    )  # fmt: skip
    # The env and the mounted spec come from one FineTuneJob; a mismatch means a stale
    # ConfigMap or a hand-edited Job, and ranks would disagree about the world size.
    if nnodes != dist.nodes:
        raise LaunchEnvError(
            f"{Env.NNODES}={nnodes} but the spec in {spec_file} has distributed.nodes "
            f"{dist.nodes}; the operator should set both from the same FineTuneJob"
        )
    if nproc != dist.processes_per_node:
        raise LaunchEnvError(
            f"{Env.NPROC_PER_NODE}={nproc} but the spec in {spec_file} has "
            f"distributed.processesPerNode {dist.processes_per_node}; the operator should set "
            "both from the same FineTuneJob"
        )
    multi = nnodes > 1
    node_rank = _int(
        env, Env.NODE_RANK, 0, nnodes - 1,
        "the pod's index in the Indexed Job (Kubernetes sets it for completionMode: Indexed)",
        default=None if multi else 0,
    )  # fmt: skip
    master_addr = env.get(Env.MASTER_ADDR, "").strip()
    if not master_addr:
        if multi:
            raise LaunchEnvError(
                f"{Env.MASTER_ADDR} is not set; the operator should set it to pod 0's name "
                "through the headless Service (<job>-0.<service>)"
            )
        master_addr = "127.0.0.1"
    if not _HOST.match(master_addr):
        raise LaunchEnvError(
            f"{Env.MASTER_ADDR}={master_addr!r} is not a host name or IP address; the "
            "operator should set pod 0's DNS name (no scheme, no port)"
        )
    master_port = _int(
        env, Env.MASTER_PORT, 1024, 65535,
        f"spec.distributed.masterPort ({dist.master_port})", default=dist.master_port,
    )  # fmt: skip
    rdzv_timeout = _int(
        env, Env.RDZV_TIMEOUT, 10, 7200,
        f"spec.distributed.rendezvousTimeoutSeconds ({dist.rendezvous_timeout_seconds})",
        default=dist.rendezvous_timeout_seconds,
    )  # fmt: skip
    return LaunchEnv(
        spec_file=spec_file,
        deepspeed=dist.deepspeed != "none",
        nnodes=nnodes,
        nproc_per_node=nproc,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
        rdzv_timeout=rdzv_timeout,
        rdzv_id=rendezvous_id(env),
    )


def rendezvous_id(env: Mapping[str, str]) -> str:
    """One id per attempt: a retried attempt never joins the state a failed one left."""
    name = env.get(Env.JOB_NAME) or "kubetune"
    parts = [env.get(Env.NAMESPACE) or "default", name, "a" + (env.get(Env.ATTEMPT) or "1")]
    return _RDZV_ID.sub("-", "-".join(parts))
