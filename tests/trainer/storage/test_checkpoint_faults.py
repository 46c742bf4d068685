"""Checkpoint faults against a real moto S3 server: the server dies mid-commit, torn and
corrupted checkpoints on resume. A checkpoint without a valid manifest never counts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.errors import RetryableError
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server, s3_server

pytestmark = pytest.mark.services
MB = 1 << 20
RUN = "runs/team-a/job1"


def make_ckpt(folder: Path, sizes: dict[str, int]) -> Path:
    folder.mkdir(parents=True)
    for name, size in sizes.items():
        (folder / name).write_bytes(os.urandom(size))
    return folder


def keys(server: S3Server, prefix: str) -> dict[str, int]:
    page = server.client().list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o["Size"] for o in page.get("Contents", [])}


def test_s3_server_dies_mid_commit_then_next_checkpoint_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with s3_server(tmp_path / "moto", persistent=True) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server.client().create_bucket(Bucket=S3_BUCKET)
        # Small parts, one thread: the upload order is deterministic; few, fast retries.
        store = open_store(
            f"s3://{S3_BUCKET}/{RUN}",
            multipart_threshold=5 * MB,
            multipart_chunksize=5 * MB,
            max_concurrency=1,
            request_attempts=2,
            transfer_attempts=3,
            backoff_seconds=0.2,
        )
        ckpts = CheckpointStore(store, parallel=1)  # files one after another, in order
        ckpts.commit(make_ckpt(tmp_path / "c1", {"adapter.bin": 1000}), 1)

        # Step 2: optimizer.pt (12 MB, 3 parts) uploads first, then adapter.bin (6 MB, 2
        # parts). The server is killed (SIGKILL by PID) right after adapter.bin's first part.
        parts: list[str] = []

        def note_part(params: dict[str, Any], **_: Any) -> None:
            parts.append(params["Key"])

        def kill_after_part(**_: Any) -> None:
            if len(parts) == 4:
                server.kill()

        events = store.client.meta.events
        events.register("before-parameter-build.s3.UploadPart", note_part)
        events.register("after-call.s3.UploadPart", kill_after_part)
        step2 = make_ckpt(tmp_path / "c2", {"optimizer.pt": 12 * MB, "adapter.bin": 6 * MB})
        with caplog.at_level(logging.WARNING), pytest.raises(RetryableError) as err:
            ckpts.commit(step2, 2)
        events.unregister("after-call.s3.UploadPart", kill_after_part)
        msg = str(err.value)
        assert parts[-1].endswith("step-000002/adapter.bin")
        assert "step-000002/adapter.bin" in msg and "failed after 3 attempts" in msg
        assert server.endpoint in msg and "testing" not in msg
        assert caplog.text.count("retrying in") == 2

        # The server comes back on the same port with its state (replayed recording).
        server.start()
        left = keys(server, f"{RUN}/checkpoints/")
        assert set(left) == {
            "step-000001/adapter.bin",
            "step-000001/MANIFEST.json",
            "step-000002/optimizer.pt",
        }, "expected step 2 torn: one file uploaded, no manifest"
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            latest = ckpts.latest()
        assert latest is not None and latest.step == 1
        assert "skipping torn checkpoint" in caplog.text and "step-000002" in caplog.text
        assert [t.name for t in ckpts.list_torn()] == ["step-000002"]

        # Training goes on and the next checkpoint commits.
        step3 = make_ckpt(tmp_path / "c3", {"optimizer.pt": 7 * MB, "adapter.bin": 2000})
        uri = ckpts.commit(step3, 3)
        assert uri == f"s3://{S3_BUCKET}/{RUN}/checkpoints/step-000003"
        assert ckpts.latest().step == 3
        raw = server.client().get_object(
            Bucket=S3_BUCKET, Key=f"{RUN}/checkpoints/step-000003/MANIFEST.json"
        )
        manifest = json.loads(raw["Body"].read())
        assert manifest["step"] == 3
        assert (
            manifest["files"]["optimizer.pt"]["sha256"]
            == hashlib.sha256((step3 / "optimizer.pt").read_bytes()).hexdigest()
        )
        ref, local = ckpts.latest_verified(tmp_path / "resume")
        assert ref.step == 3 and (local / "optimizer.pt").stat().st_size == 7 * MB


def test_torn_and_corrupted_checkpoints_are_skipped_on_resume(
    s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpts = CheckpointStore(open_store(f"s3://{S3_BUCKET}/{RUN}"))
    for step in range(1, 6):
        ckpts.commit(make_ckpt(tmp_path / f"c{step}", {"adapter.bin": 4000, "rng.pth": 50}), step)
    s3 = s3_server.client()
    base = f"{RUN}/checkpoints"
    # 5: a file went missing; 4: a file is short; 3: same size, other bytes (bit rot).
    s3.delete_object(Bucket=S3_BUCKET, Key=f"{base}/step-000005/rng.pth")
    s3.put_object(Bucket=S3_BUCKET, Key=f"{base}/step-000004/adapter.bin", Body=b"short")
    s3.put_object(Bucket=S3_BUCKET, Key=f"{base}/step-000003/adapter.bin", Body=os.urandom(4000))

    with caplog.at_level(logging.WARNING):
        latest = ckpts.latest()
    # Sizes are checked from the listing: 3 still looks committed until its bytes are read.
    assert latest is not None and latest.step == 3
    assert "step-000005: rng.pth listed in the manifest is missing" in caplog.text.replace(
        f"s3://{S3_BUCKET}/{base}/", ""
    )
    assert "step-000004" in caplog.text and "adapter.bin is 5 bytes" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ref, local = ckpts.latest_verified(tmp_path / "resume")
    assert ref.step == 2
    assert (local / "adapter.bin").read_bytes() == (tmp_path / "c2" / "adapter.bin").read_bytes()
    assert "step-000003" in caplog.text and "adapter.bin: sha256 differs" in caplog.text

    # Retention counts only good checkpoints: the damaged step 3 does not push out step 2,
    # the one the run resumed from; torn and damaged ones are never deleted.
    assert ckpts.retain(keep_last=1, protect={1}) == []
    ckpts.commit(make_ckpt(tmp_path / "c6", {"adapter.bin": 4000, "rng.pth": 50}), 6)
    deleted = ckpts.retain(keep_last=1, protect={1})
    assert deleted == [f"s3://{S3_BUCKET}/{base}/step-000002"]
    dirs = {k.split("/")[0] for k in keys(s3_server, base + "/")}
    assert dirs == {"step-000001", "step-000003", "step-000004", "step-000005", "step-000006"}
