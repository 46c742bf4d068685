"""Scenario 11's audit is not blind: a canary planted in each place audit.find_canary
searches (API request bodies and stored objects: a FineTuneJob status, a ConfigMap, an
Event; container and operator logs; S3 objects; a server's folder; scraped series) is
reported there, in plain and base64 form, and nothing else is (the Secret holding it is
where it belongs).

Real emulator and moto server (the session's), but a canary of this test's own, a
namespace and a bucket of its own: the scenarios' audits of the session canary never see
what is planted here.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from pathlib import Path

import pytest
import yaml

from tests.support.e2e.audit import find_canary
from tests.support.e2e.world import FTJ, JOBS_DIR
from tests.support.kube.cluster import EmulatorServer
from tests.support.servers.servers import S3Server

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]
NS = "e2e-audit-self"
BUCKET = "kubetune-e2e-audit"


def test_find_canary_reports_every_planted_leak(
    e2e_cluster: EmulatorServer, e2e_s3: S3Server, tmp_path: Path
) -> None:
    canary = "kt-canary-" + secrets.token_hex(12)
    b64 = base64.b64encode(canary.encode()).decode()
    e2e_cluster.create_namespace(NS)
    s3 = e2e_s3.client()
    s3.create_bucket(Bucket=BUCKET)
    store = tmp_path / "mlflow-store"
    (store / "0").mkdir(parents=True)
    (store / "0" / "meta.yaml").write_text("name: clean\n")

    # What every scenario has: the Secret (base64, as Kubernetes stores it), a FineTuneJob,
    # clean objects, clean logs. None of it is a leak.
    secret = {
        "metadata": {"name": "s3-credentials", "namespace": NS},
        "type": "Opaque",
        "data": {"AWS_SECRET_ACCESS_KEY": b64},
    }
    e2e_cluster.create("v1/secrets", secret)
    ftj = yaml_job("invalid-spec.yaml", "leaky")
    # A password inside a URL of the spec: where the user put it, so not a leak there.
    ftj["spec"]["tracking"] = {"mlflowUri": f"http://e2e-user:{canary}@mlflow.ml.svc:5000"}
    e2e_cluster.create(FTJ, ftj)
    s3.put_object(Bucket=BUCKET, Key="runs/clean/report/report.json", Body=b'{"status": "ok"}')
    logs = {"clean-a1-0-abcde": "step 1 loss 2.0\n", "operator": "reconciled\n"}

    def audit(logs: dict[str, str] = logs, texts: dict[str, str] | None = None) -> list[str]:
        return find_canary(canary, e2e_cluster, logs, e2e_s3, BUCKET, [store], texts)

    assert audit() == [], "nothing has leaked yet: the Secret's own create is allowed"

    # Leaks, one per place.
    ftj_status = f"/apis/kubetune.io/v1alpha1/namespaces/{NS}/finetunejobs/leaky/status"
    e2e_cluster.patch(FTJ, NS, "leaky", {"status": {"message": f"key {canary}"}}, status=True)
    e2e_cluster.create(
        "v1/configmaps",
        {"metadata": {"name": "leaky-spec", "namespace": NS},
         "data": {"spec": f"mlflowUri: http://e2e-user:{canary}@mlflow.ml.svc:5000"}},
    )  # fmt: skip
    event = {
        "metadata": {"name": "leaky.1", "namespace": NS},
        "involvedObject": {"kind": "FineTuneJob", "name": "leaky", "namespace": NS},
        "reason": "Leak",
        "message": f"credentials {b64}",  # a Secret's data copied as is
        "type": "Warning",
    }
    e2e_cluster.create("v1/events", event)
    s3.put_object(
        Bucket=BUCKET,
        Key="runs/leaky/report/report.json",
        Body=json.dumps({"env": {"AWS_SECRET_ACCESS_KEY": canary}}).encode(),
    )
    s3.put_object(Bucket=BUCKET, Key="runs/leaky/checkpoints/step-000001/state.json", Body=b64)
    (store / "0" / "params").write_text(f"aws_secret_access_key={canary}\n")
    leaky_logs = {
        **logs,
        "leaky-a1-0-fghij": f"env: AWS_SECRET_ACCESS_KEY={canary}\n",
        "operator": f"reconciled\nsecret data: {b64}\n",
    }
    series = {"prometheus series": json.dumps([{"metric": {"key": canary}}])}

    hits = audit(logs=leaky_logs, texts=series)
    assert hits == sorted(
        {
            f"API PATCH {ftj_status}",
            "stored finetunejobs leaky",
            f"API POST /api/v1/namespaces/{NS}/configmaps",
            "stored configmaps leaky-spec",
            f"API POST /api/v1/namespaces/{NS}/events (base64)",
            "stored events leaky.1",
            "log leaky-a1-0-fghij",
            "log operator",
            f"s3://{BUCKET}/runs/leaky/report/report.json",
            f"s3://{BUCKET}/runs/leaky/checkpoints/step-000001/state.json",
            str(store / "0" / "params"),
            "prometheus series",
        }
    ), hits


def yaml_job(file: str, name: str) -> dict:
    """A job of tests/e2e/jobs in our namespace (no operator serves it: it only sits there)."""
    text = string.Template((JOBS_DIR / file).read_text()).safe_substitute(
        BUCKET=BUCKET, S3_ENDPOINT="http://127.0.0.1:9"
    )
    doc = yaml.safe_load(text)
    doc["metadata"] = {"name": name, "namespace": NS}
    return doc
