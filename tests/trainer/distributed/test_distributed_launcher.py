"""The launcher over real torchrun + gloo, with a tiny rank program (no model).

Exit codes are the contract with the operator: a lost peer or a failed rendezvous is
RETRYABLE (75), a permanent code from any rank wins, and success is 0.
"""

from __future__ import annotations

import time
from pathlib import Path

from kubetune_api.constants import ExitCode
from tests.support.trainer.distributed import (
    HERE,
    PYTHON,
    Procs,
    job_manifest,
    operator_env,
    wait_bounded,
    write_json,
)

NODE = [PYTHON, str(HERE / "node_program.py")]


def node_env(
    base: dict[str, str],
    spec_file: Path,
    nnodes: int,
    nproc: int,
    rank: int,
    port: int,
    timeout: int = 20,
    **extra: str,
) -> dict[str, str]:
    return operator_env(base, spec_file, nnodes, nproc, rank, port, timeout, **extra)


def spec_file(tmp_path: Path, nodes: int, nproc: int, timeout: int = 20) -> Path:
    dist = {"nodes": nodes, "processesPerNode": nproc, "rendezvousTimeoutSeconds": timeout}
    return write_json(
        tmp_path / "job.json", job_manifest(distributed=dist, output={"uri": "s3://bucket/runs"})
    )


def test_two_processes_all_reduce(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    env = node_env(base_env, spec_file(tmp_path, 1, 2), 1, 2, 0, port)
    proc = procs.start(NODE, env, tmp_path / "node.log")
    assert proc.wait(120) == ExitCode.OK
    log = (tmp_path / "node.log").read_text()
    # (1 + 2) summed over 3 steps, seen by both ranks.
    assert "rank 0 sum 9.0" in log and "rank 1 sum 9.0" in log


def test_permanent_code_of_one_rank_is_the_node_code(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    env = node_env(
        base_env,
        spec_file(tmp_path, 1, 2),
        1,
        2,
        0,
        port,
        KT_BEHAVIOUR_RANK1=f"exit:{ExitCode.BAD_DATA}",
    )
    assert procs.start(NODE, env, tmp_path / "node.log").wait(120) == ExitCode.BAD_DATA


def test_killed_rank_makes_the_node_retryable(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    timeout = 20
    env = node_env(
        base_env,
        spec_file(tmp_path, 1, 2, timeout),
        1,
        2,
        0,
        port,
        timeout,
        KT_BEHAVIOUR_RANK1="sigkill",
        KT_STEPS="50",
        KT_STEP_SECONDS="0.2",
    )
    log = tmp_path / "node.log"
    node = procs.start(NODE, env, log)
    # Rank 1 prints this line and SIGKILLs itself right after it.
    deadline = time.monotonic() + 120
    while "rank 1 training" not in log.read_text():
        assert time.monotonic() < deadline and node.poll() in (None, ExitCode.RETRYABLE)
        time.sleep(0.05)
    code, _ = wait_bounded(node, time.monotonic(), timeout, log)
    assert code == ExitCode.RETRYABLE


def test_lost_node_makes_the_survivor_exit_retryable(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    timeout = 20
    spec = spec_file(tmp_path, 2, 1, timeout)
    knobs = {"KT_STEPS": "1000", "KT_STEP_SECONDS": "0.1"}
    envs = [node_env(base_env, spec, 2, 1, i, port, timeout, **knobs) for i in (0, 1)]
    node0 = procs.start(NODE, envs[0], tmp_path / "n0.log")
    node1 = procs.start(NODE, envs[1], tmp_path / "n1.log")
    # Kill node 1 (its launcher and rank, like a lost pod) once training is under way.
    deadline = time.monotonic() + 120
    while "training" not in (tmp_path / "n1.log").read_text():
        assert time.monotonic() < deadline and node0.poll() is None
        time.sleep(0.2)
    procs.kill_group(node1)
    killed_at = time.monotonic()
    # Bounded: the survivor fails on its own within the timeout + EXIT_MARGIN_SECONDS.
    code, _ = wait_bounded(node0, killed_at, timeout, tmp_path / "n0.log")
    assert code == ExitCode.RETRYABLE
    assert "lost a peer" in (tmp_path / "n0.log").read_text()


def test_rendezvous_without_peers_times_out_retryable(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    env = node_env(base_env, spec_file(tmp_path, 2, 1, timeout=10), 2, 1, 0, port, timeout=10)
    assert procs.start(NODE, env, tmp_path / "n0.log").wait(120) == ExitCode.RETRYABLE
    assert "RendezvousTimeoutError" in (tmp_path / "n0.log").read_text()
