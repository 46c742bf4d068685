"""Scenarios 1, 10 and 11: examples/quickstart.yaml on one node, end to end.

YAML -> the real operator (its own process) -> ConfigMap/Indexed Job in the API
emulator -> the kubelet stand-in runs `kubetune launch` -> the trainer reads data from and
writes artifacts to moto S3, reports to MLflow, serves /metrics -> a real Prometheus
scrapes the trainer and the operator -> the operator writes status and Events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_api import constants as c
from tests.support.e2e.world import FTJ, World
from tests.support.net import free_port
from tests.support.servers.servers import MlflowServer, prometheus_server

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
NAME = "quickstart"


def quickstart_example(world: World, metrics_port: int, mlflow_uri: str) -> dict[str, Any]:
    """examples/quickstart.yaml with only what a CPU-only box and this cluster need: the tiny
    built-in Llama instead of SmolLM2 (its ~40 s conversion), the same finance Q&A file from
    S3 (a slice of it), a small evaluation, S3 output with the user's Secret, a metrics port
    the harness can scrape, and an MLflow server to report to. Steps, checkpoints, adapter,
    learning rate, scheduler and validation are the example's own."""
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"] = {"name": NAME, "namespace": world.namespace}
    spec = doc["spec"]
    assert spec["model"]["base"] == "builtin:smollm2-135m-instruct", spec["model"]
    spec["model"]["base"] = "builtin:tiny-llama"
    assert spec["dataset"]["source"] == "examples/data/finance_qa/train.jsonl", spec["dataset"]
    spec["dataset"].update(
        source=f"s3://{world.bucket}/data/finance_qa.jsonl", maxExamples=48, maxSeqLength=128
    )
    spec["evaluation"].update(maxSamples=2, generation={"maxNewTokens": 8})
    spec["output"].update(
        uri=f"s3://{world.bucket}/runs",
        credentialsSecret="s3-credentials",
        s3Endpoint=world.s3.endpoint,
    )
    spec["metrics"] = {"port": metrics_port}
    spec["tracking"] = {"mlflowUri": mlflow_uri, "experiment": "e2e-quickstart"}
    return doc


@pytest.mark.in_image  # pods run inside the built trainer image (tests/e2e/README.md)
def test_quickstart_one_node(world: World, mlflow_server: MlflowServer) -> None:
    trainer_port = free_port()
    targets = [f"127.0.0.1:{trainer_port}", f"127.0.0.1:{world.operator.metrics_port}"]
    # The canary is also the MLflow password, inside the tracking URL (user:password@): the
    # operator moves it to the job's own Secret and the trainer authenticates from there;
    # the audit at the end must not find it in the ConfigMap, logs, MLflow or S3.
    host = mlflow_server.uri.removeprefix("http://")
    job = quickstart_example(world, trainer_port, f"http://e2e-user:{world.canary}@{host}")
    total = job["spec"]["training"]["maxSteps"]
    keep = job["spec"]["training"].get("keepLastCheckpoints", 2)  # the CRD's default
    with prometheus_server(targets, world.workdir / "prometheus") as prom:
        world.submit(job)

        running = world.wait(NAME, lambda s: s.get("phase") == c.Phase.RUNNING, 120, "Running")
        assert running["attempt"] == 1 and running["jobName"] == f"{NAME}-a1"
        st = world.succeeded(NAME)

        # Scenario 10: Prometheus scraped the trainer (labels namespace + job) and the operator.
        sel = f'namespace="{world.namespace}",finetunejob="{NAME}"'
        loss = prom.wait_for(f"last_over_time(kubetune_train_loss{{{sel}}}[1h])", 60)
        assert 0 < float(loss[0]["value"][1]) < 20
        steps = prom.wait_for(f"max_over_time(kubetune_train_step{{{sel}}}[1h])", 60)
        assert float(steps[0]["value"][1]) >= 2
        prom.wait_for(
            'kubetune_jobs{phase="Succeeded"}', 60, accept=lambda r: float(r[0]["value"][1]) >= 1
        )
        series = prom.query('{__name__=~"kubetune_.+"}')

    # Status: finished with the whole progress, the adapter and no restart.
    assert st["progress"]["totalSteps"] == total, st
    assert st["progress"]["step"] == total, st
    assert st["restarts"] == 0 and st["attempt"] == 1, st
    assert st.get("completionTime") and st.get("startTime"), st
    assert any(x["type"] == c.ConditionType.SUCCEEDED and x["status"] == "True"
               for x in st["conditions"]), st  # fmt: skip

    # Artifacts in S3, read with boto3: adapter, committed checkpoints, report.
    prefix = world.run_prefix(NAME)
    keys = world.s3_keys(prefix)
    adapter_uri = f"s3://{world.bucket}/{prefix}adapter"
    assert st.get("adapter", {}).get("uri", "").rstrip("/") == adapter_uri, st
    assert len(st["adapter"]["sha256"]) == 64 and st["adapter"]["sizeBytes"] > 0, st
    assert prefix + "adapter/adapter_model.safetensors" in keys, keys
    assert prefix + "adapter/adapter_config.json" in keys, keys
    assert not [k for k in keys if k.startswith(prefix + "adapter/") and "model.safetensors" in k
                and "adapter_model" not in k], "the base weights must never be saved"  # fmt: skip
    committed = world.committed_steps(NAME)
    assert committed and committed[-1] == total, committed
    # keepLastCheckpoints newest, plus the best by eval loss (the example validates).
    assert len(committed) <= keep + 1, f"keepLastCheckpoints: {keep}, found {committed}"
    report = world.s3_json(prefix + "report/report.json")
    assert report["status"] == "succeeded" and report["results"]["steps"] == total, report
    assert prefix + "report/metrics.jsonl" in keys, keys

    # The pod: Succeeded with exit code 0 and the trainer's summary as termination message.
    (pod,) = world.pods_of(NAME, 1)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pod["status"]["phase"] == "Succeeded" and term["exitCode"] == 0, pod["status"]
    assert json.loads(term["message"])["phase"] == "done", term

    # Events on every transition.
    reasons = [e["reason"] for e in world.events(NAME)]
    for want in (c.Reason.JOB_CREATED, c.Reason.PODS_RUNNING, c.Reason.COMPLETED):
        assert want in reasons, reasons

    # MLflow holds the run with its loss curve.
    runs = _mlflow_runs(mlflow_server.uri, "e2e-quickstart")
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED", runs
    assert any(m["key"] == "train_loss" or "loss" in m["key"] for m in runs[0]["data"]["metrics"])

    # Deleting the finished job removes its children and keeps the artifacts (retain).
    world.cluster.delete(FTJ, world.namespace, NAME)
    world.wait_until(lambda: world.ftj(NAME) is None, 120, "the FineTuneJob to go", NAME)
    assert world.children(NAME) == {kind: [] for kind in world.children(NAME)}
    assert world.s3_keys(prefix) == keys, "cleanupPolicy retain (the default) keeps artifacts"

    # Scenario 11: the S3 secret key never leaves the Secret, nor the MLflow password the
    # job's URL carried its own Secret (checked after everything ran).
    world.assert_no_canary(
        folders=[mlflow_server.root], texts={"prometheus series": json.dumps(series)}
    )


def _mlflow_runs(uri: str, experiment: str) -> list[dict]:
    import urllib.parse
    import urllib.request

    q = urllib.parse.urlencode({"experiment_name": experiment})
    with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/get-by-name?{q}") as r:
        exp_id = json.loads(r.read())["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [exp_id]}).encode()
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return list(json.loads(r.read()).get("runs") or [])
