"""Credentials inside URLs (user:password@ in tracking.mlflowUri, metrics.pushgatewayUrl)
never reach the ConfigMap, the status, Events or the Job: the operator moves them into
the job's own Secret, which the trainer gets as environment variables. Through the real
operator against the API emulator; every request body and stored object is searched."""

from __future__ import annotations

import base64
import json

from kubetune_api import constants as c
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.operator import NS, cond, load_ftj, phase_is, status

PASSWORD = "kt-url-canary-7f3a9"
PG_PASSWORD = "kt-pg-canary-41b2c"
MLFLOW = f"http://alice:{PASSWORD}@mlflow.ml.svc:5000"
PUSHGATEWAY = f"https://bob:{PG_PASSWORD}@pushgw.monitoring.svc:9091"
JOBS = "batch/v1/jobs"


def leaks(cluster: EmulatorServer, secret: str) -> list[str]:
    """Where `secret` went, besides where the user put it (the FineTuneJob's spec) and the
    one Secret meant to hold it (base64 there, as Kubernetes stores Secrets)."""
    plain = secret.encode()
    hits = []
    for r in cluster.requests():
        body = r.body or b""
        if r.url.path.endswith("/finetunejobs") and r.method.value == "POST":
            body = json.dumps({k: v for k, v in json.loads(body).items() if k != "spec"}).encode()
        if plain in body or plain in str(r.url).encode():
            hits.append(f"{r.method.value} {r.url.path}")
    for _rv, res, event in list(cluster.emu.log):
        obj = dict(event["object"])
        if res.plural == "finetunejobs":
            obj.pop("spec", None)
        if res.plural != "secrets" and plain in json.dumps(obj).encode():
            hits.append(f"stored {res.plural} {obj['metadata'].get('name')}")
    return sorted(set(hits))


def test_url_credentials_go_to_an_owned_secret_and_nowhere_else(operator):
    cluster = operator
    ftj = load_ftj(tracking={"mlflowUri": MLFLOW}, metrics={"pushgatewayUrl": PUSHGATEWAY})
    cluster.create(FTJ, ftj)
    job = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    uid = cluster.get(FTJ, NS, "llama-lora")["metadata"]["uid"]
    # The ConfigMap: the URLs without their userinfo, in the spec and the accepted spec.
    cm = cluster.get("v1/configmaps", NS, "llama-lora-spec")
    resolved = json.loads(cm["data"][c.SPEC_FILE_NAME])["spec"]
    assert resolved["tracking"]["mlflowUri"] == "http://mlflow.ml.svc:5000"
    assert resolved["metrics"]["pushgatewayUrl"] == "https://pushgw.monitoring.svc:9091"
    accepted = json.loads(cm["metadata"]["annotations"]["kubetune.io/accepted-spec"])
    assert accepted["tracking"]["mlflowUri"] == "http://mlflow.ml.svc:5000"
    # The Secret: owned by the FineTuneJob, named with its uid, the variables MLflow and
    # the trainer's Pushgateway push read.
    name = f"llama-lora-url-credentials-{uid[:8]}"
    secret = cluster.get("v1/secrets", NS, name)
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] == [uid]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        "KUBETUNE_PUSHGATEWAY_USERNAME": "bob",
        "KUBETUNE_PUSHGATEWAY_PASSWORD": PG_PASSWORD,
    }
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [
        {"secretRef": {"name": "s3-creds"}},
        {"secretRef": {"name": name}},
    ]
    # A mutable edit is not mistaken for a change of the (stripped) tracking URL.
    cluster.patch(FTJ, NS, "llama-lora", {"spec": {"runPolicy": {"maxRestarts": 5}}})
    wait_for(lambda: status(cluster).get("observedGeneration") == 2, what="the edit seen")
    assert not cond(status(cluster), "SpecChangeRejected")
    assert leaks(cluster, PASSWORD) == [] and leaks(cluster, PG_PASSWORD) == []


def test_invalid_url_with_a_password_is_reported_redacted(operator):
    cluster = operator
    source = f"https://alice:{PASSWORD}@data.example/train.jsonl"  # not a supported scheme
    cluster.create(FTJ, load_ftj(dataset={"source": source}))
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    assert cond(st, "Failed")["reason"] == "InvalidSpec"
    assert "'https://***@data.example/train.jsonl' has unsupported scheme" in st["message"]
    wait_for(lambda: [e for e in cluster.events(NS, "llama-lora") if e["reason"] == "InvalidSpec"])
    assert leaks(cluster, PASSWORD) == []
