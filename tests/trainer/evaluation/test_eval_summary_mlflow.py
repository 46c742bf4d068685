"""A metric over zero examples reaches MLflow as a "null (over 0 ...)" tag, never as a
0.0 metric; measured ones as final.evaluation.* metrics (real MLflow server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kubetune_trainer.evaluation.report import evaluation_summary
from kubetune_trainer.reporting.sinks import RunInfo
from kubetune_trainer.reporting.tracking import MlflowSink
from tests.support.servers.plugin import mlflow_server  # noqa: F401 - the fixture, found by name
from tests.support.servers.servers import MlflowServer

pytestmark = pytest.mark.services

EVALUATION = {
    "base": {"metrics": {"recommendation_parse_rate": 0.0, "direction_accuracy": None,
                         "direction_examples": 0.0, "brier_score": None,
                         "confidence_examples": 0.0}},
    "tuned": {"metrics": {"recommendation_parse_rate": 0.5, "direction_accuracy": 1.0,
                          "direction_examples": 2.0, "brier_score": 0.04,
                          "confidence_examples": 2.0}},
}  # fmt: skip


def test_summary_marks_nulls_with_their_count() -> None:
    s = evaluation_summary(EVALUATION)
    assert s["evaluation.base.brier_score"] == "null (over 0 confidence_examples)"
    assert s["evaluation.base.direction_accuracy"] == "null (over 0 direction_examples)"
    assert s["evaluation.base.direction_examples"] == 0.0
    assert s["evaluation.tuned.brier_score"] == 0.04
    assert evaluation_summary(None) == {}


def test_mlflow_gets_nulls_as_tags(
    mlflow_server: MlflowServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run = RunInfo("team-a", "nulls", 1, str(tmp_path / "out"))
    sink = MlflowSink(mlflow_server.uri, "kubetune-nulls")
    sink.on_start(run, {"spec": {}, "precision": "fp32"})
    sink.on_end({"steps": 2, **evaluation_summary(EVALUATION)}, None)
    got = MlflowClient(mlflow_server.uri).get_run(run.state["mlflow_run_id"]).data
    assert "final.evaluation.base.brier_score" not in got.metrics
    assert got.tags["kubetune.evaluation.base.brier_score"] == "null (over 0 confidence_examples)"
    assert got.metrics["final.evaluation.base.direction_examples"] == 0.0
    assert got.metrics["final.evaluation.tuned.brier_score"] == 0.04
