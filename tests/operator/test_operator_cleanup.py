"""spec.output.cleanupPolicy on deletion, against a real S3 API (moto server over HTTP).

The operator deletes `<uri>/<namespace>/<name>/` with its OWN credentials (environment);
without credentials it keeps the artifacts and says so with a Warning Event. Its
credentials go only to endpoints its configuration allows (--s3-endpoint-allow): for any
other s3Endpoint no request is sent at all (the server's request log stays empty).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import NS, load_ftj, status
from tests.support.servers.servers import S3Server, s3_server

BUCKET = "artifacts"
KEYS = [
    "kubetune/team-a/llama-lora/adapter/adapter_model.safetensors",
    "kubetune/team-a/llama-lora/checkpoints/step-000010/MANIFEST.json",
    "kubetune/team-a/llama-lora-2/adapter/adapter_model.safetensors",
]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    # persistent: moto logs every request it receives (the denied case checks none came).
    with s3_server(tmp_path / "moto", persistent=True) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        for key in KEYS:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        yield server


@pytest.fixture
def allowing(cluster: EmulatorServer, s3: S3Server) -> Iterator[EmulatorServer]:
    """The operator with the moto server on its --s3-endpoint-allow list."""
    config = OperatorConfig(reconcile_interval=0.5, metrics_port=None,
                            s3_endpoint_allow=(s3.endpoint + "/",))  # fmt: skip
    with run_operator(cluster, [NS], config):
        yield cluster


def received(server: S3Server) -> list[str]:
    """The requests the moto server has received (its recording), S3 API calls only."""
    assert server.recording is not None
    lines = server.recording.read_text().splitlines() if server.recording.exists() else []
    return [line for line in lines if "/moto-api/" not in line]


def keys(server: S3Server) -> list[str]:
    return sorted(
        o["Key"] for o in server.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
    )


def delete_job(cluster, server: S3Server) -> None:
    cluster.create(FTJ, load_ftj(output={"s3Endpoint": server.endpoint, "cleanupPolicy": "delete"}))
    wait_for(lambda: status(cluster).get("jobName"), what="the Job")
    cluster.delete(FTJ, NS, "llama-lora")
    wait_for(lambda: cluster.get(FTJ, NS, "llama-lora") is None, what="deletion")


def test_cleanup_delete_removes_only_this_jobs_prefix(allowing, s3, monkeypatch):
    operator = allowing
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    delete_job(operator, s3)
    assert keys(s3) == ["kubetune/team-a/llama-lora-2/adapter/adapter_model.safetensors"]
    ev = wait_for(
        lambda: [e for e in operator.events(NS, "llama-lora") if e["reason"] == "CleanupDone"]
    )
    assert "deleted 2 objects under s3://artifacts/kubetune/team-a/llama-lora/" in ev[0]["message"]


def test_cleanup_without_credentials_keeps_artifacts_and_warns(allowing, s3, monkeypatch):
    operator = allowing
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    delete_job(operator, s3)
    assert keys(s3) == sorted(KEYS)
    ev = wait_for(
        lambda: [e for e in operator.events(NS, "llama-lora") if e["reason"] == "CleanupFailed"]
    )
    assert ev[0]["type"] == "Warning" and "no S3 credentials" in ev[0]["message"]


def test_cleanup_to_an_endpoint_not_allowed_sends_nothing(operator, s3, monkeypatch):
    """The default operator allows AWS S3 only: a job's own s3Endpoint gets no request
    signed with the operator's credentials (SSRF); the deletion still completes."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    before = received(s3)
    delete_job(operator, s3)
    assert received(s3) == before, "the operator sent a request to a denied endpoint"
    assert keys(s3) == sorted(KEYS)
    assert not [r for r in received(s3) if "operator-key" in r]
    ev = wait_for(
        lambda: [e for e in operator.events(NS, "llama-lora") if e["reason"] == "CleanupDenied"]
    )
    assert ev[0]["type"] == "Warning"
    assert (
        f"s3Endpoint {s3.endpoint} is not in the operator's --s3-endpoint-allow"
        in (ev[0]["message"])
    )
    assert "s3://artifacts/kubetune" in ev[0]["message"]
    patches = [
        r.data["status"]["conditions"]
        for r in operator.requests()
        if r.method.value == "PATCH" and r.url.path.endswith("/llama-lora/status")
        and "ArtifactsCleanedUp" in str(r.data)
    ]  # fmt: skip
    (cond,) = [c for c in patches[-1] if c["type"] == "ArtifactsCleanedUp"]
    assert cond["reason"] == "CleanupDenied" and cond["message"] == ev[0]["message"]
    # A whole metav1.Condition: the CRD requires lastTransitionTime (the write is refused
    # without it), and it names the generation it was set from.
    assert cond["lastTransitionTime"] and cond["observedGeneration"] == 1
