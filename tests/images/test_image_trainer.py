"""The trainer image (CPU variant, built by `make images`) run as a pod runs it: UID 1000,
read-only root, /tmp and /cache the only writable mounts, tini as PID 1.

A real 2-step training of builtin:tiny-llama inside the container writes its adapter to the
moto S3 server on 127.0.0.1; SIGTERM to the container (to tini, PID 1) ends a longer run with
a committed checkpoint and exit code 76, as a preempted pod does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from kubetune_api.constants import ExitCode
from tests.support.containers import VERSION, Mount, Rootfs, run, start
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server
from tests.support.trainer.tracked_run import tiny_tracked_job

pytestmark = [pytest.mark.images]
ROOT = Path(__file__).resolve().parents[2]

# Written where a read-only root must refuse it (/var/tmp is mode 1777, /workspace and
# /home/kubetune are UID 1000's: writable unless the root is read-only) and where the
# pod's volumes must accept it.
WRITE_PROBE = """
for d in / /opt/kubetune /home/kubetune /workspace /etc /var/tmp /tmp /cache; do
  if touch "$d/.probe" 2>/dev/null; then echo "writable $d"; rm -f "$d/.probe"; fi
done
echo "uid=$(id -u) gid=$(id -g) pid=$$"
"""


def mounts(volumes: dict[str, Path], *extra: Mount) -> list[Mount]:
    return [Mount(path, target) for target, path in volumes.items()] + list(extra)


def pod_env(s3: S3Server | None = None) -> dict[str, str]:
    """What the operator's Job gives the trainer container (builders._env), offline."""
    env = {"HOME": "/tmp", "XDG_CACHE_HOME": "/cache", "HF_HOME": "/cache/huggingface",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "KUBETUNE_TERMINATION_LOG": "/tmp/termination-log", "OMP_NUM_THREADS": "1"}  # fmt: skip
    if s3 is not None:
        env |= {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    return env


def test_runs_as_uid_1000_on_a_read_only_root(trainer_image: Rootfs, volumes) -> None:
    # The image's own user (no override), exactly as the chart runs it.
    code, out = run(trainer_image, ["sh", "-c", WRITE_PROBE], mounts=mounts(volumes), user=None)
    assert code == 0, out
    assert "uid=1000 gid=1000 pid=1" in out
    assert sorted(line for line in out.splitlines() if line.startswith("writable")) == [
        "writable /cache",
        "writable /tmp",
    ], out


def test_version_and_validate_every_example(trainer_image: Rootfs, volumes) -> None:
    code, out = run(trainer_image, args=["--version"], mounts=mounts(volumes), env=pod_env())
    assert (code, out.strip().splitlines()[-1]) == (0, f"kubetune {VERSION}"), out
    examples = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))
    assert examples
    code, out = run(
        trainer_image,
        args=["validate", *[f"/workspace/examples/{n}" for n in examples]],
        mounts=mounts(volumes, Mount(ROOT / "examples", "/workspace/examples", readonly=True)),
        env=pod_env(),
    )
    assert code == 0, out
    for name in examples:
        assert name in out, out


def job_dir(tmp_path: Path, name: str, steps: int, **spec) -> Path:
    """tests/trainer's tiny tracked job, its data file seen at /job inside the container."""
    folder = tmp_path / "job"
    folder.mkdir()
    path = tiny_tracked_job(folder, name, steps, f"s3://{S3_BUCKET}/runs", {}, **spec)
    job = yaml.safe_load(path.read_text())
    job["spec"]["dataset"]["source"] = "/job/qa.jsonl"
    job["spec"].pop("tracking")
    path.write_text(yaml.safe_dump(job))
    return folder


def s3_keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.services
@pytest.mark.slow
def test_two_real_training_steps_inside_the_image_to_s3(
    trainer_image: Rootfs, volumes, s3_server: S3Server, tmp_path: Path
) -> None:
    folder = job_dir(tmp_path, "in-image", 2)
    code, out = run(
        trainer_image,
        args=["train", "--spec", "/job/job.yaml"],
        mounts=mounts(volumes, Mount(folder, "/job", readonly=True)),
        # The opt-in allocator (a job's env): the image's libjemalloc2, preloaded by `kubetune`.
        env=pod_env(s3_server) | {"KUBETUNE_ALLOCATOR": "jemalloc"},
        timeout=600,
    )
    assert code == 0, out[-4000:]
    assert "malloc jemalloc;" in out
    keys = s3_keys(s3_server, "runs/test/in-image/")
    assert any(k.endswith("adapter/adapter_model.safetensors") for k in keys), keys
    metrics = [k for k in keys if k.endswith("metrics.jsonl")]
    assert metrics, keys
    body = s3_server.client().get_object(Bucket=S3_BUCKET, Key=metrics[0])["Body"].read()
    steps = [json.loads(line).get("step") for line in body.decode().splitlines()]
    assert 2 in steps, steps


@pytest.mark.services
@pytest.mark.slow
def test_sigterm_to_tini_commits_a_checkpoint_and_exits_76(
    trainer_image: Rootfs, volumes, s3_server: S3Server, tmp_path: Path
) -> None:
    folder = job_dir(tmp_path, "preempted", 2000)
    container = start(
        trainer_image,
        args=["train", "--spec", "/job/job.yaml"],
        mounts=mounts(volumes, Mount(folder, "/job", readonly=True)),
        env=pod_env(s3_server),
        stdout=subprocess.PIPE,
    )
    lines: list[str] = []
    committed = threading.Event()

    def follow() -> None:
        assert container.proc.stdout is not None
        for raw in container.proc.stdout:
            lines.append(raw.decode(errors="replace"))
            if "checkpoint step 4 committed" in lines[-1]:
                committed.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        assert committed.wait(300), "".join(lines[-40:])
        # PID 1 is tini (the image's ENTRYPOINT), which forwards the kubelet's SIGTERM.
        assert container.exec(["cat", "/proc/1/cmdline"]).split("\0")[0] == "/usr/bin/tini"
        container.signal(signal.SIGTERM)
        code = container.wait(120)
    finally:
        container.kill_all()
        container.delete()
    reader.join(30)
    assert code == ExitCode.PREEMPTED == 76, "".join(lines[-40:])
    summary = json.loads((volumes["/tmp"] / "termination-log").read_text())
    assert summary["exit_code"] == 76 and summary["checkpoint"].startswith(f"s3://{S3_BUCKET}/")
    keys = s3_keys(s3_server, "runs/test/preempted/checkpoints/")
    step_dir = summary["checkpoint"].rstrip("/").rsplit("/", 1)[-1]
    assert any(k.endswith(f"{step_dir}/MANIFEST.json") for k in keys), keys
    assert 4 <= summary["step"] < 2000
