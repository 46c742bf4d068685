"""Registry records never carry a password a spec wrote inside a URL (the Pushgateway's
too, not only MLflow's), and the engine prints its resolved spec redacted."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_api.loader import parse_job
from kubetune_trainer.registry import build_record, get, register

PASSWORD, PG_PASSWORD = "kt-reg-canary-1a", "kt-reg-canary-2b"


def test_record_spec_masks_every_url_password(tmp_path: Path) -> None:
    job = parse_job({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "fin-qa", "namespace": "team-a"},
        "spec": {"model": {"base": "builtin:tiny-llama"},
                 "dataset": {"source": "data/train.jsonl", "format": "finance_qa"},
                 "output": {"uri": str(tmp_path / "runs")},
                 "tracking": {"mlflowUri": f"http://alice:{PASSWORD}@mlflow:5000"},
                 "metrics": {"pushgatewayUrl": f"http://bob:{PG_PASSWORD}@pushgw:9091"}},
    })  # fmt: skip
    record = build_record(job, {"adapter": {"uri": "s3://b/x", "sha256": "ab" * 32}}, None)
    spec = record["spec"]
    assert spec["tracking"]["mlflowUri"] == "http://***@mlflow:5000"
    assert spec["metrics"]["pushgatewayUrl"] == "http://***@pushgw:9091"
    stored = register(str(tmp_path / "runs"), "fin-qa", record)
    text = json.dumps(get(str(tmp_path / "runs"), "fin-qa")) + json.dumps(stored)
    assert PASSWORD not in text and PG_PASSWORD not in text
