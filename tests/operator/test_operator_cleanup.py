"""spec.output.cleanupPolicy on deletion, against a real S3 API (moto server over HTTP).

The operator deletes `<uri>/<namespace>/<name>/` with its OWN credentials (environment);
without credentials it keeps the artifacts and says so with a Warning Event.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.servers import S3Server, s3_server
from kube_cluster import FTJ, wait_for
from op_support import NS, load_ftj
from test_operator_lifecycle import status

BUCKET = "artifacts"
KEYS = [
    "kubetune/team-a/llama-lora/adapter/adapter_model.safetensors",
    "kubetune/team-a/llama-lora/checkpoints/step-000010/MANIFEST.json",
    "kubetune/team-a/llama-lora-2/adapter/adapter_model.safetensors",
]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server(tmp_path / "moto") as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        for key in KEYS:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        yield server


def keys(server: S3Server) -> list[str]:
    return sorted(
        o["Key"] for o in server.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
    )


def delete_job(cluster, server: S3Server) -> None:
    cluster.create(FTJ, load_ftj(output={"s3Endpoint": server.endpoint, "cleanupPolicy": "delete"}))
    wait_for(lambda: status(cluster).get("jobName"), what="the Job")
    cluster.delete(FTJ, NS, "llama-lora")
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="deletion")


def test_cleanup_delete_removes_only_this_jobs_prefix(operator, s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    delete_job(operator, s3)
    assert keys(s3) == ["kubetune/team-a/llama-lora-2/adapter/adapter_model.safetensors"]
    ev = wait_for(
        lambda: [e for e in operator.events(NS, "llama-lora") if e["reason"] == "CleanupDone"]
    )
    assert "deleted 2 objects under s3://artifacts/kubetune/team-a/llama-lora/" in ev[0]["message"]


def test_cleanup_without_credentials_keeps_artifacts_and_warns(operator, s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    delete_job(operator, s3)
    assert keys(s3) == sorted(KEYS)
    ev = wait_for(
        lambda: [e for e in operator.events(NS, "llama-lora") if e["reason"] == "CleanupFailed"]
    )
    assert ev[0]["type"] == "Warning" and "no S3 credentials" in ev[0]["message"]
