"""Distributed training through the real engine on CPU (gloo): builtin:tiny-llama, fp32.

Every multi-rank run is started the way a pod starts it: `kubetune launch` with the
operator's environment. The reference is one process with the same global batch
(micro batch 2) against 2 ranks x micro batch 1: the seedable sampler deals the same
examples to each global step, so the loss curves agree to float rounding.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.constants import ExitCode
from tests.support.trainer.distributed import (
    KUBETUNE,
    STEPS,
    Procs,
    adapter_weights,
    assert_same_curve,
    launch_nodes,
    losses,
    run_dir,
    spec,
    wait_bounded,
    wait_ok,
    write_data,
    write_json,
)

pytestmark = pytest.mark.slow
# The SIGTERM test needs steps left when the signal lands: a tiny step takes ~40 ms and the
# signal travels test -> launcher -> torchrun -> ranks, so 6 steps can all finish first.
LONG_STEPS = 80  # 24 was not enough under load: all 22 steps left finished first


def test_ddp_two_processes_match_one_process(
    reference: Path, tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    manifest = spec(write_data(tmp_path / "data.jsonl"), str(out), processesPerNode=2)
    wait_ok(launch_nodes(procs, tmp_path, manifest, base_env, port), tmp_path)
    assert_same_curve(losses(out), losses(reference))
    ref_w, got_w = adapter_weights(reference), adapter_weights(out)
    assert max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w) < 1e-4
    # Rank 0 alone wrote: one report, one adapter, checkpoints at steps 3 and 6; rank 1's
    # RNG state is in the checkpoint because ranks meet at a barrier before the commit.
    ckpts = sorted(p.name for p in (run_dir(out) / "checkpoints").iterdir())
    assert ckpts == ["step-000003", "step-000006"]
    assert (run_dir(out) / "checkpoints" / "step-000006" / "rng_state_1.pth").is_file()
    log = (tmp_path / "node0.log").read_text()
    assert log.count("adapter: ") == 1 and "--nproc-per-node 2" in log


def test_two_nodes_through_kubetune_launch(
    reference: Path, tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    """2 pods x 1 process, c10d on 127.0.0.1: JOB_COMPLETION_INDEX 0 and 1, as the Indexed Job."""
    out = tmp_path / "out"
    # A multi-node spec must name shared storage; the test redirects it to a local folder.
    manifest = spec(write_data(tmp_path / "data.jsonl"), "s3://kubetune-test/runs", nodes=2)
    nodes = launch_nodes(procs, tmp_path, manifest, base_env, port, output=out)
    wait_ok(nodes, tmp_path)
    assert_same_curve(losses(out), losses(reference))
    logs = [(tmp_path / f"node{i}.log").read_text() for i in range(2)]
    assert "--node-rank 0" in logs[0] and "is_host=true" in logs[0]
    assert "--node-rank 1" in logs[1] and "is_host=false" in logs[1]
    assert sum(log.count("adapter: ") for log in logs) == 1  # global rank 0 only
    # Both ranks' RNG states are committed although each node staged only its own.
    step6 = run_dir(out) / "checkpoints" / "step-000006"
    assert sorted(p.name for p in step6.glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]


def _iam_key(endpoint: str, user: str, actions: list[str]) -> dict[str, str]:
    """A moto IAM user allowed only `actions` on S3; its key as environment variables."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )  # fmt: skip
    iam.create_user(UserName=user)
    allow = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [allow]}
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def test_two_nodes_only_rank0_writes_to_s3(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    """2 pods x 1 process on a real, authenticating S3 (moto): pod 1's key may only read.

    A write from rank 1 would be refused (403): it would fail the run, or, where the engine
    tolerates a failed write (the registry record), still show in the server's log.
    """
    import botocore.exceptions

    from tests.support.servers.servers import s3_server

    bucket = "kubetune-test"
    # The first 6 requests (2 IAM users x 3 calls) are unauthenticated; every later one
    # is checked against the caller's policy.
    with s3_server(tmp_path / "moto", env={"INITIAL_NO_AUTH_ACTION_COUNT": "6"}) as s3:
        writer = _iam_key(s3.endpoint, "rank0", ["s3:*"])
        reader = _iam_key(s3.endpoint, "rank1", ["s3:GetObject", "s3:ListBucket"])

        def client(key: dict[str, str]) -> Any:
            return s3.client(
                aws_access_key_id=key["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=key["AWS_SECRET_ACCESS_KEY"],
            )

        client(writer).create_bucket(Bucket=bucket)
        env = base_env | {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        manifest = spec(write_data(tmp_path / "data.jsonl"), f"s3://{bucket}/runs", nodes=2)
        nodes = launch_nodes(procs, tmp_path, manifest, env, port, node_extra=[writer, reader])
        wait_ok(nodes, tmp_path)

        server_log = (tmp_path / "moto" / "moto.log").read_text()
        denied = [line for line in server_log.splitlines() if '" 403 ' in line]
        assert denied == [], "a request was refused (rank 1 wrote?):\n" + "\n".join(denied)
        keys = sorted(
            o["Key"]
            for page in client(writer).get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        )
        run, registry = "runs/test/dist/", "runs/registry/"
        assert all(k.startswith((run, registry)) for k in keys), keys
        adapters = [k for k in keys if k.endswith("adapter_model.safetensors")]
        assert [k for k in adapters if "/checkpoints/" not in k] == [
            run + "adapter/adapter_model.safetensors"
        ]
        assert [k for k in keys if k.endswith("report.json")] == [run + "report/report.json"]
        assert [k for k in keys if k.startswith(registry)] == [
            registry + "dist/v1.json",
            registry + "index.json",
        ]
        # Rank 1's RNG state reached the commit through rank 0 (collect_node_files).
        step6 = run + "checkpoints/step-000006/"
        assert {step6 + "rng_state_0.pth", step6 + "rng_state_1.pth"} <= set(keys)
        assert step6 + "MANIFEST.json" in keys
        # The check above means something: moto does refuse rank 1's key a write.
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            client(reader).put_object(Bucket=bucket, Key=run + "probe", Body=b"x")
        assert '" 403 ' in (tmp_path / "moto" / "moto.log").read_text()


def test_two_nodes_zero2_commit_every_shard_and_resume(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    """ZeRO-2 over 2 nodes: each node's optimizer shard reaches the commit; a resumed
    attempt loads both (DeepSpeed fails if its shard is missing)."""
    out = tmp_path / "out"
    manifest = spec(
        write_data(tmp_path / "data.jsonl"), "s3://kubetune-test/runs", nodes=2, deepspeed="zero2"
    )
    wait_ok(launch_nodes(procs, tmp_path, manifest, base_env, port, output=out), tmp_path)
    step6 = run_dir(out) / "checkpoints" / "step-000006"
    shards = sorted(p.name for p in step6.glob("global_step6/zero_pp_rank_*_optim_states.pt"))
    assert shards == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    manifest["spec"]["training"]["maxSteps"] = STEPS + 2
    again = launch_nodes(procs, tmp_path, manifest, base_env, port, output=out, tag="again")
    wait_ok(again, tmp_path, tag="again")
    logs = "".join((tmp_path / f"again{i}.log").read_text() for i in range(2))
    assert "resuming from" in logs
    assert sorted(losses(out))[-2:] == [STEPS + 1, STEPS + 2]


@pytest.mark.parametrize(("stage", "nproc"), [("zero2", 2), ("zero3", 2)])
def test_deepspeed_matches_one_process(
    reference: Path,
    tmp_path: Path,
    procs: Procs,
    port: int,
    base_env: dict[str, str],
    stage: str,
    nproc: int,
) -> None:
    out = tmp_path / "out"
    manifest = spec(
        write_data(tmp_path / "data.jsonl"),
        str(out),
        micro=2 // nproc,
        processesPerNode=nproc,
        deepspeed=stage,
    )
    # Evaluation on: rank 0 must not generate alone on a ZeRO-3 model (it would hang).
    manifest["spec"]["evaluation"] = {
        "enabled": True,
        "maxSamples": 2,
        "generation": {"maxNewTokens": 4},
    }
    wait_ok(launch_nodes(procs, tmp_path, manifest, base_env, port), tmp_path)
    if stage == "zero3":
        assert "generation skipped under ZeRO-3" in (tmp_path / "node0.log").read_text()
    assert_same_curve(losses(out), losses(reference))
    ref_w, got_w = adapter_weights(reference), adapter_weights(out)
    assert ref_w.keys() == got_w.keys()
    assert max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w) < 1e-4
    step_dir = run_dir(out) / "checkpoints" / "step-000006"
    shards = sorted(p.name for p in step_dir.glob("global_step6/*optim_states.pt"))
    assert len(shards) == nproc, shards  # every rank's ZeRO shard made it into the commit


def test_sigterm_then_resume_in_two_processes(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    # Over 24 steps at this learning rate, 1- vs 2-process rounding grows past the tolerance
    # (the DDP test covers that match over 6); resume is judged against 2 uninterrupted ranks.
    reference = tmp_path / "reference"
    manifest = spec(write_data(tmp_path / "data.jsonl"), str(reference), processesPerNode=2)
    manifest["spec"]["training"] |= {"saveSteps": 2, "maxSteps": LONG_STEPS}
    wait_ok(launch_nodes(procs, tmp_path, manifest, base_env, port, tag="ref"), tmp_path, "ref")
    out = tmp_path / "out"
    manifest["spec"]["output"]["uri"] = str(out)
    (node,) = launch_nodes(procs, tmp_path, manifest, base_env, port, tag="first")
    log = tmp_path / "first0.log"
    deadline = time.monotonic() + 300
    while "checkpoint step 2 committed" not in log.read_text():
        assert node.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    node.send_signal(signal.SIGTERM)  # what the kubelet sends PID 1 on preemption
    assert node.wait(300) == ExitCode.PREEMPTED, log.read_text()[-3000:]
    first = losses(out)
    stopped = max(first)
    assert 2 <= stopped < LONG_STEPS
    # Both ranks stopped at the same step, and that step's checkpoint is committed.
    assert (run_dir(out) / "checkpoints" / f"step-{stopped:06d}" / "MANIFEST.json").is_file()
    # Attempt 2: same job, resumes from the newest committed checkpoint.
    (again,) = launch_nodes(procs, tmp_path, manifest, base_env, port, tag="second")
    wait_ok([again], tmp_path, tag="second")
    assert "resuming from" in (tmp_path / "second0.log").read_text()
    assert_same_curve(losses(out), losses(reference))


def test_killed_node_makes_the_survivor_exit_retryable(
    tmp_path: Path, procs: Procs, port: int, base_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    manifest = spec(write_data(tmp_path / "data.jsonl"), "s3://kubetune-test/runs", nodes=2)
    manifest["spec"]["training"]["maxSteps"] = 400
    timeout = 15
    manifest["spec"]["distributed"]["rendezvousTimeoutSeconds"] = timeout
    node0, node1 = launch_nodes(procs, tmp_path, manifest, base_env, port, output=out)
    deadline = time.monotonic() + 300
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    while not any("step 2/" in f.read_text() for f in logs):
        assert node0.poll() is None and time.monotonic() < deadline, logs[0].read_text()[-3000:]
        time.sleep(0.2)
    procs.kill_group(node1)  # the pod is gone: launcher and rank, no goodbye
    killed_at = time.monotonic()
    # The survivor sees its collective fail (or time out after 15 s) and exits 75, within
    # the timeout + EXIT_MARGIN_SECONDS of the kill.
    code, _ = wait_bounded(node0, killed_at, timeout, logs[0])
    assert code == ExitCode.RETRYABLE, logs[0].read_text()[-3000:]
    # The rank itself classified it (not only the launcher's mapping of torchrun's result).
    assert "lost a peer" in logs[0].read_text()


@pytest.mark.parametrize(
    ("deepspeed", "nproc"), [("none", 2), ("zero3", 1)], ids=["ddp-2", "zero3-1"]
)
def test_kubetune_run_launches_torchrun_locally(
    reference: Path, tmp_path: Path, base_env: dict[str, str], deepspeed: str, nproc: int
) -> None:
    """`kubetune run` goes through local_launch -> kubetune launch -> torchrun for more than
    one process, and for DeepSpeed even with one (DeepSpeed needs torchrun's environment).
    Micro batch 2 // nproc keeps the reference's global batch of 2."""
    out = tmp_path / "out"
    manifest = spec(
        write_data(tmp_path / "data.jsonl"),
        "./unused",
        micro=2 // nproc,
        processesPerNode=nproc,
        deepspeed=deepspeed,
    )
    job = write_json(tmp_path / "job.json", manifest)
    proc = subprocess.run(
        [KUBETUNE, "run", str(job), "--output", str(out)],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"torchrun --nnodes 1 --nproc-per-node {nproc} " in proc.stderr
    assert_same_curve(losses(out), losses(reference))
    ref_w, got_w = adapter_weights(reference), adapter_weights(out)
    assert max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w) < 1e-4
    step6 = run_dir(out) / "checkpoints" / "step-000006"
    if nproc > 1:
        # Every rank trained: each one's RNG state is in the committed checkpoint.
        ranks = sorted(p.name for p in step6.glob("rng_state_*.pth"))
        assert ranks == [f"rng_state_{r}.pth" for r in range(nproc)]
    if deepspeed == "zero3":
        # ZeRO-3's own layout: model states per partition (ZeRO-1/2 write
        # mp_rank_00_model_states.pt; without DeepSpeed there is no global_step6), and the
        # stage in the config DeepSpeed saved with them. A silent fallback fails here.
        import torch

        ds = step6 / "global_step6"
        states = ds / "zero_pp_rank_0_mp_rank_00_model_states.pt"
        assert states.is_file(), sorted(p.name for p in step6.rglob("*"))
        assert not (ds / "mp_rank_00_model_states.pt").exists()
        saved = torch.load(states, map_location="cpu", weights_only=False)
        assert saved["ds_config"]["zero_optimization"]["stage"] == 3
