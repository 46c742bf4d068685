"""The launcher's pod contract: torchrun_command from the operator's environment."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_api.constants import Env, ExitCode
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.distributed import LaunchEnvError, read_launch_env, torchrun_command
from tests.support.builders import MINIMAL_SPEC, make_job


def launch_job(**distributed: Any) -> FineTuneJob:
    return make_job(
        "s3://bucket/runs",
        "llama-med",
        namespace="team-a",
        base=MINIMAL_SPEC,
        distributed=distributed,
    )


def pod_env(**over: str) -> dict[str, str]:
    """Exactly what the operator sets in pod 1 of a 2-node x 2-process job."""
    env = {
        Env.SPEC_FILE: "/etc/kubetune/finetunejob.json",
        Env.NAMESPACE: "team-a",
        Env.JOB_NAME: "llama-med",
        Env.ATTEMPT: "2",
        Env.NNODES: "2",
        Env.NPROC_PER_NODE: "2",
        Env.NODE_RANK: "1",
        Env.MASTER_ADDR: "llama-med-a2-0.llama-med-a2",
        Env.MASTER_PORT: "29500",
        Env.RDZV_TIMEOUT: "300",
    }
    env.update(over)
    return {k: v for k, v in env.items() if v != "<unset>"}


JOB = launch_job(nodes=2, processesPerNode=2, rendezvousTimeoutSeconds=300)


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_pod_env_gives_the_full_torchrun_command() -> None:
    cmd = torchrun_command(pod_env(), JOB)
    assert cmd[0] == "torchrun"
    assert option(cmd, "--nnodes") == "2"
    assert option(cmd, "--nproc-per-node") == "2"
    assert option(cmd, "--node-rank") == "1"
    assert option(cmd, "--rdzv-backend") == "c10d"
    assert option(cmd, "--rdzv-endpoint") == "llama-med-a2-0.llama-med-a2:29500"
    assert option(cmd, "--max-restarts") == "0"
    assert int(option(cmd, "--shutdown-timeout")) < 120  # inside the pod's grace period
    conf = dict(kv.split("=") for kv in option(cmd, "--rdzv-conf").split(","))
    assert conf == {
        "timeout": "300",
        "join_timeout": "300",
        "read_timeout": "300",
        "is_host": "false",
    }
    # Each attempt rendezvous under its own id: a retry never meets a dead attempt's state.
    assert option(cmd, "--rdzv-id") == "team-a-llama-med-a2"
    assert cmd[cmd.index("-m") :] == [
        "-m",
        "kubetune_trainer.cli",
        "train",
        "--spec",
        "/etc/kubetune/finetunejob.json",
    ]


def test_pod_zero_hosts_the_rendezvous_store() -> None:
    cmd = torchrun_command(pod_env(**{Env.NODE_RANK: "0"}), JOB)
    assert "is_host=true" in option(cmd, "--rdzv-conf")
    assert option(cmd, "--node-rank") == "0"


def test_port_and_timeout_default_to_the_spec() -> None:
    job = launch_job(nodes=2, masterPort=31000, rendezvousTimeoutSeconds=45)
    env = pod_env(
        **{Env.MASTER_PORT: "<unset>", Env.RDZV_TIMEOUT: "<unset>", Env.NPROC_PER_NODE: "1"}
    )
    cmd = torchrun_command(env, job)
    assert option(cmd, "--rdzv-endpoint").endswith(":31000")
    assert "join_timeout=45" in option(cmd, "--rdzv-conf")


def test_single_node_needs_no_index_or_master() -> None:
    job = launch_job(processesPerNode=2)
    env = pod_env(**{Env.NNODES: "1", Env.NODE_RANK: "<unset>", Env.MASTER_ADDR: "<unset>"})
    launch = read_launch_env(env, job)
    assert (launch.node_rank, launch.master_addr, launch.world_size) == (0, "127.0.0.1", 2)
    assert not launch.direct


def test_ipv6_master_is_bracketed() -> None:
    cmd = torchrun_command(pod_env(**{Env.MASTER_ADDR: "fd00::1"}), JOB)
    assert option(cmd, "--rdzv-endpoint") == "[fd00::1]:29500"


@pytest.mark.parametrize(
    ("over", "variable", "hint"),
    [
        ({Env.SPEC_FILE: "<unset>"}, Env.SPEC_FILE, "mounted FineTuneJob JSON"),
        ({Env.NNODES: "<unset>"}, Env.NNODES, "spec.distributed.nodes (2)"),
        ({Env.NNODES: "two"}, Env.NNODES, "not an integer"),
        ({Env.NNODES: "3"}, Env.NNODES, "distributed.nodes 2"),
        ({Env.NPROC_PER_NODE: "0"}, Env.NPROC_PER_NODE, "out of range 1..64"),
        ({Env.NPROC_PER_NODE: "4"}, Env.NPROC_PER_NODE, "processesPerNode 2"),
        ({Env.NODE_RANK: "<unset>"}, Env.NODE_RANK, "index in the Indexed Job"),
        ({Env.NODE_RANK: "2"}, Env.NODE_RANK, "out of range 0..1"),
        ({Env.MASTER_ADDR: "<unset>"}, Env.MASTER_ADDR, "headless Service"),
        ({Env.MASTER_ADDR: "http://pod-0:29500"}, Env.MASTER_ADDR, "no scheme, no port"),
        ({Env.MASTER_PORT: "80"}, Env.MASTER_PORT, "out of range 1024..65535"),
        ({Env.RDZV_TIMEOUT: "5s"}, Env.RDZV_TIMEOUT, "rendezvousTimeoutSeconds (300)"),
    ],
)
def test_bad_variable_is_named_with_the_fix(over: dict[str, str], variable: str, hint: str) -> None:
    with pytest.raises(LaunchEnvError) as err:
        torchrun_command(pod_env(**over), JOB)
    message = str(err.value)
    assert message.startswith(variable), message
    assert hint in message
    # A broken pod template will not fix itself on retry: permanent.
    assert err.value.exit_code == ExitCode.INVALID_SPEC


def test_torchrun_parses_the_command() -> None:
    """torchrun's own argument parser reads every option as meant."""
    from torch.distributed.run import parse_args

    args = parse_args(torchrun_command(pod_env(), JOB)[1:])
    assert (args.nnodes, args.nproc_per_node, args.max_restarts) == ("2", "2", 0)
    assert args.rdzv_backend == "c10d" and args.rdzv_endpoint.endswith(":29500")
    assert args.module and args.training_script == "kubetune_trainer.cli"
    assert args.training_script_args == ["train", "--spec", "/etc/kubetune/finetunejob.json"]
