"""A real tiny training run (`kubetune run`, builtin:tiny-llama) writing to S3 (moto),
tracked in MLflow and scraped by Prometheus while it runs: the three views agree with the
run's own metrics.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support.net import free_port
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import MlflowServer, S3Server
from tests.support.trainer.tracked_run import tiny_tracked_job

pytestmark = [pytest.mark.services, pytest.mark.slow]
STEPS = 8
SEL = '{namespace="test",finetunejob="observed"}'


def job_file(tmp_path: Path, metrics_port: int, mlflow_uri: str) -> Path:
    return tiny_tracked_job(
        tmp_path, "observed", STEPS, f"s3://{S3_BUCKET}/runs",
        {"mlflowUri": mlflow_uri, "experiment": "observed"}, metrics={"port": metrics_port},
    )  # fmt: skip


def readme_commands(s3: S3Server, mlflow_uri: str, prom_url: str) -> dict[str, str]:
    """Run docs/observability.md's three commands in bash; their standard output by view.

    The doc's names (my-bucket, team-a/my-job, MLflow on :5000, Prometheus on :9090) become
    this test's; `aws`, `mlflow` come from the venv ([dev] extra), jq and curl from Debian
    (scripts/apt-packages.txt).
    """
    prefix = f"s3://{S3_BUCKET}/runs/test/observed"
    commands = {
        "s3": f'aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls --recursive {prefix}/',
        "mlflow": (
            f"MLFLOW_TRACKING_URI={mlflow_uri} mlflow runs describe --run-id "
            f'"$(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp {prefix}/tracking/mlflow-run.json'
            ' - | jq -r .run_id)"'
        ),
        # With a range ([10m]): the run has ended and its target is gone, so the doc's
        # instant selector alone returns no series (they are stale): [] here.
        "prometheus": (
            f"curl -s {prom_url}/api/v1/query --data-urlencode "
            """'query={__name__=~"kubetune_.*",namespace="test",finetunejob="observed"}[10m]'"""
        ),
    }
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "AWS_ENDPOINT_URL": s3.endpoint}  # fmt: skip
    shown = {}
    for view, command in commands.items():
        print(f"$ {command}")
        done = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        shown[view] = done.stdout
    return shown


def test_prometheus_scrapes_a_real_tiny_training_run(
    s3_server: S3Server, mlflow_server: MlflowServer, prometheus_server, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KUBETUNE_CACHE": os.environ.get("KUBETUNE_CACHE", str(tmp_path / "cache")),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
        # Keep /metrics up after the end until Prometheus has scraped the final values.
        "KUBETUNE_METRICS_LINGER_SECONDS": "120",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    }
    env.pop("KUBETUNE_OUTPUT_URI", None)
    kubetune = str(Path(sys.executable).parent / "kubetune")
    with prometheus_server([f"127.0.0.1:{port}"]) as prom:
        log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [kubetune, "run", str(job_file(tmp_path, port, mlflow_server.uri))],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            # Polled while the run proceeds; the last step shows up before the process ends.
            prom.wait_for(f"kubetune_train_step{SEL} == {STEPS}", timeout=600)
            assert proc.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        body = s3_server.client().get_object(
            Bucket=S3_BUCKET, Key="runs/test/observed/report/metrics.jsonl"
        )["Body"]
        rows = [json.loads(line) for line in body.read().splitlines()]
        train = [r for r in rows if "loss" in r]
        assert [r["step"] for r in train] == list(range(1, STEPS + 1))

        def last(metric: str) -> float:
            result = prom.query(f"last_over_time({metric}{SEL}[10m])")
            assert len(result) == 1, (metric, result)
            return float(result[0]["value"][1])

        assert last("kubetune_train_loss") == pytest.approx(train[-1]["loss"])
        assert last("kubetune_train_total_steps") == STEPS
        assert last("kubetune_train_learning_rate") == pytest.approx(train[-1]["learning_rate"])
        assert last("kubetune_train_grad_norm") == pytest.approx(train[-1]["grad_norm"])
        assert last("kubetune_checkpoint_seconds_count") == 2  # steps 4 and 8
        # Real tokens: a counter equal to the last row's running total (all of one attempt).
        assert last("kubetune_train_tokens_total") == train[-1]["tokens_seen"] > 0
        rss = prom.query(
            'last_over_time(kubetune_memory_bytes{finetunejob="observed",kind="rss"}[10m])'
        )
        assert float(rss[0]["value"][1]) > 1e6

        # The S3 prefix: both checkpoints committed (manifest last), the adapter, the report.
        keys = {o["Key"] for o in s3_server.client().list_objects_v2(
            Bucket=S3_BUCKET, Prefix="runs/test/observed/")["Contents"]}  # fmt: skip
        for step in (4, 8):
            assert f"runs/test/observed/checkpoints/step-{step:06d}/MANIFEST.json" in keys
        assert "runs/test/observed/adapter/adapter_model.safetensors" in keys
        assert "runs/test/observed/report/report.json" in keys

        # The MLflow run: same losses at the same steps, the report as artifacts.
        client = MlflowClient(mlflow_server.uri)
        exp = client.get_experiment_by_name("observed")
        (run,) = client.search_runs([exp.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.tags["kubetune.name"] == "observed"
        assert run.data.params["spec.training.maxSteps"] == str(STEPS)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in train]
        names = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
        # reporting/report.py writes the plot as loss_curve.png beside report.json.
        assert {"report/report.json", "report/metrics.jsonl", "report/loss_curve.png"} <= names
        png = client.download_artifacts(run.info.run_id, "report/loss_curve.png", str(tmp_path))
        assert Path(png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

        # The doc's three commands, as a person runs them (its names replaced by this
        # test's bucket, job and servers): the S3 prefix, the MLflow run, the series.
        shown = readme_commands(s3_server, mlflow_server.uri, prom.url)
        assert "runs/test/observed/checkpoints/step-000008/MANIFEST.json" in shown["s3"]
        described = json.loads(shown["mlflow"])
        assert described["info"]["run_id"] == run.info.run_id
        assert described["data"]["params"]["spec.training.maxSteps"] == str(STEPS)
        series = json.loads(shown["prometheus"])["data"]["result"]
        loss = [s for s in series if s["metric"]["__name__"] == "kubetune_train_loss"]
        assert len(loss) == 1, series
        assert float(loss[0]["values"][-1][1]) == pytest.approx(train[-1]["loss"])
