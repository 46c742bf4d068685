"""The S3 store against a real moto server over HTTP; assertions through boto3."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kubetune_trainer.errors import ConfigError
from kubetune_trainer.storage import S3Store, delete_run, fetch, open_store, write_manifest
from kubetune_trainer.storage.base import IntegrityError
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server, s3_server

pytestmark = pytest.mark.services
MB = 1 << 20


def test_s3_store_roundtrip_and_multipart(s3_server: S3Server, tmp_path: Path) -> None:
    store = open_store(
        f"s3://{S3_BUCKET}/runs/team-a/job1", multipart_threshold=5 * MB, multipart_chunksize=5 * MB
    )
    assert isinstance(store, S3Store) and store.endpoint_url == s3_server.endpoint
    store.check_writable()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MB))  # 3 parts of 5 MB: a real multipart upload
    # The sha256 comes from the one read that fed the upload (multipart and single PUT).
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    assert store.put_file(big, "adapter/adapter_model.safetensors") == want
    small = tmp_path / "small.json"
    small.write_bytes(b'{"a": 1}')
    assert store.put_file(small, "adapter/small.json") == hashlib.sha256(b'{"a": 1}').hexdigest()
    store.delete_prefix("adapter/small.json")
    store.put_bytes("report/report.json", b"{}")

    s3 = s3_server.client()
    head = s3.head_object(
        Bucket=S3_BUCKET, Key="runs/team-a/job1/adapter/adapter_model.safetensors"
    )
    assert head["ContentLength"] == 12 * MB
    assert head["ETag"].strip('"').endswith("-3"), "expected a 3-part multipart upload"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET)["Contents"]]
    assert keys == [
        "runs/team-a/job1/adapter/adapter_model.safetensors",
        "runs/team-a/job1/report/report.json",
    ], "the preflight probe must not be left behind"

    back = store.get_file("adapter/adapter_model.safetensors", tmp_path / "back.bin", want)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == want
    # Checked while it arrives: a wrong hash leaves the destination as it was.
    with pytest.raises(IntegrityError, match="sha256 differs"):
        store.get_file("adapter/adapter_model.safetensors", back, "0" * 64)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == want
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert store.list() == ["adapter/adapter_model.safetensors", "report/report.json"]
    assert store.exists("report/report.json") and not store.exists("report/nope")
    with pytest.raises(FileNotFoundError):
        store.get_bytes("report/nope")
    assert store.uri("report") == f"s3://{S3_BUCKET}/runs/team-a/job1/report"


def test_create_bytes_is_a_conditional_put(s3_server: S3Server) -> None:
    store = open_store(f"s3://{S3_BUCKET}/runs/cond")
    assert store.create_bytes("registry/a/v1.json", b"first") is True
    assert store.create_bytes("registry/a/v1.json", b"second") is False  # 412, not retried
    got = s3_server.client().get_object(Bucket=S3_BUCKET, Key="runs/cond/registry/a/v1.json")
    assert got["Body"].read() == b"first"


def test_delete_run_touches_only_that_run(s3_server: S3Server) -> None:
    s3 = s3_server.client()
    for key in ("runs/ns/job/a", "runs/ns/job/b/c", "runs/ns/job2/a", "runs/ns/jobx"):
        s3.put_object(Bucket=S3_BUCKET, Key=key, Body=b"1")
    assert delete_run(f"s3://{S3_BUCKET}/runs/ns/job") == 2
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET)["Contents"])
    assert left == ["runs/ns/job2/a", "runs/ns/jobx"]
    with pytest.raises(ValueError, match="whole bucket"):
        delete_run(f"s3://{S3_BUCKET}")


def test_fetch_prefix_verifies_manifest_and_single_object(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"hidden": 8}')
    (src / "sub" / "weights.bin").write_bytes(os.urandom(3000))
    write_manifest(src)
    s3 = s3_server.client()
    for p in src.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), S3_BUCKET, f"models/tiny/{p.relative_to(src).as_posix()}")

    got = fetch(f"s3://{S3_BUCKET}/models/tiny", tmp_path / "dl")
    assert got == tmp_path / "dl"
    assert (got / "sub" / "weights.bin").read_bytes() == (src / "sub" / "weights.bin").read_bytes()
    one = fetch(f"s3://{S3_BUCKET}/models/tiny/config.json", tmp_path / "one")
    assert one == tmp_path / "one" / "config.json" and json.loads(one.read_text()) == {"hidden": 8}

    # A re-upload without a file (here: the manifest and a shard): the old copies go too.
    (got / "sub" / "old-shard.bin").write_bytes(b"stale")
    s3.delete_object(Bucket=S3_BUCKET, Key="models/tiny/MANIFEST.json")
    again = fetch(f"s3://{S3_BUCKET}/models/tiny", tmp_path / "dl")
    left = sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file())
    assert left == ["config.json", "sub/weights.bin"]
    s3.upload_file(str(src / "MANIFEST.json"), S3_BUCKET, "models/tiny/MANIFEST.json")

    # Same size, other bytes in the bucket: the manifest's sha256 catches it.
    s3.put_object(Bucket=S3_BUCKET, Key="models/tiny/sub/weights.bin", Body=os.urandom(3000))
    with pytest.raises(ConfigError, match=r"sub/weights.bin: sha256 differs"):
        fetch(f"s3://{S3_BUCKET}/models/tiny", tmp_path / "dl2")
    with pytest.raises(ConfigError, match="nothing found"):
        fetch(f"s3://{S3_BUCKET}/models/none", tmp_path / "dl3")


def test_missing_bucket_is_a_config_error_before_any_upload(s3_server: S3Server) -> None:
    store = open_store("s3://no-such-bucket/runs")
    with pytest.raises(ConfigError) as err:
        store.check_writable()
    msg = str(err.value)
    assert "'no-such-bucket'" in msg and s3_server.endpoint in msg and "create the bucket" in msg
    bucket_names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert bucket_names == [S3_BUCKET]


def test_wrong_or_missing_credentials_fail_preflight(tmp_path: Path, monkeypatch) -> None:
    # moto checks signatures only after INITIAL_NO_AUTH_ACTION_COUNT requests: the first
    # three create an IAM user with a key; every request after that is authenticated.
    import boto3

    with s3_server(tmp_path / "moto", env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as server:
        iam = boto3.client(
            "iam", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )  # fmt: skip
        iam.create_user(UserName="trainer")
        allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow_all]}
        iam.put_user_policy(UserName="trainer", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        server.client(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
        ).create_bucket(Bucket=S3_BUCKET)

        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(ConfigError) as err:
            open_store(f"s3://{S3_BUCKET}/runs").check_writable()
        assert "refused" in str(err.value) and "AWS_SECRET_ACCESS_KEY" in str(err.value)
        assert "not-the-secret" not in str(err.value), "a secret must never reach a message"

        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with pytest.raises(ConfigError, match="no S3 credentials"):
            open_store(f"s3://{S3_BUCKET}/runs").check_writable()

        # The right key works, and nothing was written by the failed attempts.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        store = open_store(f"s3://{S3_BUCKET}/runs")
        assert store.list() == []
        store.check_writable()
        CheckpointStore(store).commit(_one_file(tmp_path / "c"), 1)
        assert [r.step for r in CheckpointStore(store).list_committed()] == [1]


def _one_file(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"w" * 100)
    return folder


def test_unreachable_endpoint_is_retryable_and_names_it(monkeypatch) -> None:
    from kubetune_trainer.errors import RetryableError
    from tests.support.net import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = open_store(f"s3://{S3_BUCKET}/runs", endpoint_url=endpoint, request_attempts=1)
    with pytest.raises(RetryableError) as err:
        store.check_writable()
    assert endpoint in str(err.value) and "s3Endpoint" in str(err.value)
