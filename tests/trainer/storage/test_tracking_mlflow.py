"""The MLflow sink against a real MLflow server (sqlite backend); assertions through the
MLflow client: params, metric history, tags, artifacts, registry, resume, outages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kubetune_trainer.errors import RetryableError
from kubetune_trainer.reporting.sinks import LogRow, RunInfo
from kubetune_trainer.reporting.tracking import MlflowSink, flatten_params
from tests.support.net import free_port
from tests.support.servers.servers import MlflowServer, TcpProxy

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _fast_mlflow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set here so the sink's own defaults (os.environ.setdefault) do not leak past the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def rows(first: int, last: int, total: int) -> list[LogRow]:
    return [
        LogRow(step=s, total_steps=total, epoch=s / total, loss=4.0 / s, learning_rate=1e-4,
               grad_norm=0.5, tokens_per_second=900.0, memory_bytes={"rss": 10_000 + s},
               eval_loss=3.0 / s if s % 2 == 0 else None, extra={"eval_perplexity": 20.0 / s})
        for s in range(first, last + 1)
    ]  # fmt: skip


def report_and_adapter(root: Path) -> Path:
    report = root / "report"
    report.mkdir(parents=True)
    (report / "report.json").write_text(json.dumps({"tuned_eval_loss": 1.5}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [4.0, 2.0, 1.3])
    fig.savefig(report / "loss.png")
    plt.close(fig)
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    return report


def test_flatten_params_limits() -> None:
    flat = flatten_params({"spec": {"a": {"b": 1, "c": None}, "l": [1, {"x": 2}], "t": "x" * 7000}})
    assert flat == {"spec.a.b": "1", "spec.l": '[1, {"x": 2}]', "spec.t": "x" * 6000}


def test_run_params_metrics_artifacts_registry_and_resume(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    spec = {"model": {"base": "builtin:tiny-llama"}, "training": {"learningRate": 0.0002},
            "data": {"sources": [{"uri": "s3://b/d.jsonl"}]}, "prompt": "p" * 7000,
            "tracking": {"mlflowUri": "http://alice:s3cret@mlflow.example:5000"}}  # fmt: skip
    run = RunInfo("team-a", "job1", 1, str(tmp_path / "out" / "team-a" / "job1"))
    sink = MlflowSink(mlflow_server.uri, "kubetune-test", "tiny-adapter", store_uri=run.output_uri)
    sink.on_start(run, {"spec": spec, "precision": "fp32"})
    run_id = run.state["mlflow_run_id"]
    for row in rows(1, 4, 8):
        sink.on_log(row)
    sink.on_checkpoint(run.output_uri + "/checkpoints/step-000004", 4, 1.25)
    # Attempt 1 ends without on_end (the pod was lost); attempt 2 resumes at step 4.
    sink.close()

    run2 = RunInfo("team-a", "job1", 2, run.output_uri, resumed_from="step-000004",
                   state={"mlflow_run_id": run_id})  # fmt: skip
    sink2 = MlflowSink(mlflow_server.uri, "kubetune-test", "tiny-adapter")
    sink2.on_start(run2, {"spec": spec, "precision": "fp32"})
    assert run2.state["mlflow_run_id"] == run_id, "a resumed attempt continues the MLflow run"
    for row in rows(5, 8, 8):
        sink2.on_log(row)
    report = report_and_adapter(tmp_path / "staging")
    sink2.on_end({"steps": 8, "tuned_eval_loss": 1.5, "adapter_uri": "s3://b/x/adapter"},
                 str(report))  # fmt: skip

    client = MlflowClient(mlflow_server.uri)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["spec.model.base"] == "builtin:tiny-llama"
    assert got.data.params["spec.training.learningRate"] == "0.0002"
    assert got.data.params["spec.data.sources"] == '[{"uri": "s3://b/d.jsonl"}]'
    assert len(got.data.params["spec.prompt"]) == 6000
    assert got.data.params["precision"] == "fp32"
    assert got.data.params["spec.tracking.mlflowUri"] == "http://***@mlflow.example:5000"
    assert not any("s3cret" in v for v in got.data.params.values())
    tags = got.data.tags
    assert tags["kubetune.namespace"] == "team-a" and tags["kubetune.name"] == "job1"
    assert tags["kubetune.attempt"] == "2" and tags["kubetune.version"]
    assert tags["kubetune.last_checkpoint"].endswith("step-000004")
    assert tags["mlflow.runName"] == "team-a/job1"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 4.0 / s) for s in range(1, 9)]
    assert [m.step for m in client.get_metric_history(run_id, "eval_loss")] == [2, 4, 6, 8]
    assert client.get_metric_history(run_id, "memory_rss_bytes")[-1].value == 10_008
    assert client.get_metric_history(run_id, "checkpoint_seconds")[0].value == 1.25
    assert got.data.metrics["final.tuned_eval_loss"] == 1.5
    artifacts = {f.path for f in client.list_artifacts(run_id, "report")}
    assert artifacts == {"report/report.json", "report/loss.png"}
    adapter = {f.path: f.file_size for f in client.list_artifacts(run_id, "adapter")}
    assert adapter["adapter/adapter_model.safetensors"] == 4096

    versions = client.search_model_versions("name='tiny-adapter'")
    assert len(versions) == 1 and versions[0].run_id == run_id
    assert versions[0].source.endswith("/adapter")
    assert versions[0].tags["kubetune.adapter_uri"] == "s3://b/x/adapter"
    assert tags_after(client, run_id)["kubetune.registered_model"] == "tiny-adapter/1"
    local = client.download_artifacts(run_id, "adapter", str(tmp_path / "dl"))
    assert (Path(local) / "adapter_config.json").read_text() == '{"r": 8}'

    # Without the id in RunInfo.state, a resumed attempt finds it under the run prefix.
    run3 = RunInfo("team-a", "job1", 3, run.output_uri, resumed_from="step-000008")
    sink3 = MlflowSink(mlflow_server.uri, "kubetune-test", store_uri=run.output_uri)
    sink3.on_start(run3, {"spec": spec})
    assert run3.state["mlflow_run_id"] == run_id
    sink3.on_end({"steps": 8}, None)


def tags_after(client: MlflowClient, run_id: str) -> dict[str, str]:
    return client.get_run(run_id).data.tags


def test_unreachable_mlflow_fails_before_training() -> None:
    uri = f"http://user:secret@127.0.0.1:{free_port()}"
    sink = MlflowSink(uri, "kubetune-test")
    with pytest.raises(RetryableError) as err:
        sink.check()
    msg = str(err.value)
    assert "http://***@127.0.0.1" in msg and "unreachable" in msg and "tracking.mlflowUri" in msg
    assert "secret" not in msg


def test_mlflow_outage_mid_run_warns_and_training_goes_on(
    mlflow_server: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The sink reaches the server through a relay; cutting it makes the server unreachable
    # mid-run (connection refused) while the server and its store stay as they were.
    proxy = TcpProxy(mlflow_server.port)
    run = RunInfo("team-a", "job2", 1, str(tmp_path / "out"))
    sink = MlflowSink(f"http://{proxy.address}", "outage")
    sink.on_start(run, {"spec": {"a": 1}})
    for row in rows(1, 2, 6):
        sink.on_log(row)
    sink.flush()  # rows 1-2 reached the server
    proxy.cut()
    with caplog.at_level(logging.WARNING):
        for row in rows(3, 4, 6):
            sink.on_log(row)  # never raises: the rows are sent from a thread
        sink.flush()
    assert "MLflow logging failed" in caplog.text
    proxy.restore()  # the outage ends: later rows and the end of the run get through
    for row in rows(5, 6, 6):
        sink.on_log(row)
    sink.on_end({"steps": 6}, None)
    proxy.cut()

    client = MlflowClient(mlflow_server.uri)
    history = client.get_metric_history(run.state["mlflow_run_id"], "loss")
    assert [m.step for m in history] == [1, 2, 5, 6], "rows of the outage are dropped, no more"
    assert client.get_run(run.state["mlflow_run_id"]).info.status == "FINISHED"


def _job(tracking: dict | None):
    from kubetune_api.loader import parse_job

    spec = {"model": {"base": "builtin:tiny-llama"}, "dataset": {"source": "d.jsonl"}}
    if tracking:
        spec["tracking"] = tracking
    return parse_job({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
                      "metadata": {"name": "j", "namespace": "ns"}, "spec": spec})  # fmt: skip


def test_engine_hook_checks_the_server_before_training() -> None:
    from kubetune_trainer.reporting.tracking import sink_for

    run = RunInfo("ns", "j", 1, "/tmp/unused")
    assert sink_for(_job(None), run) is None
    down = _job({"mlflowUri": f"http://127.0.0.1:{free_port()}", "experiment": "e"})
    with pytest.raises(RetryableError, match="unreachable"):
        sink_for(down, run)
    assert sink_for(down, RunInfo("ns", "j", 1, "/tmp/unused", rank=1)) is None
