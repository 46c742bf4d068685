"""The chart's ServiceMonitor and PodMonitor relabelings, applied by a real Prometheus that
scrapes a real trainer sink and a real operator metrics endpoint WITHOUT honor_labels (what a
platform forcing `overrideHonorLabels` gets): every per-job series still has the FineTuneJob's
`namespace` and `finetunejob`, `job` stays the scrape job's, nothing is left as exported_*.

The Prometheus Operator turns a monitor into a scrape config: its `relabelings` become
relabel_configs and `metricRelabelings` metric_relabel_configs (same fields, snake_case), and
it labels each target with `namespace` (the pod's or the Service's). Static targets stand in
for the Kubernetes service discovery: the labels it would give are set on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubetune_operator.metrics import OperatorMetrics
from kubetune_trainer.reporting.prometheus import PrometheusSink
from kubetune_trainer.reporting.sinks import LogRow, RunInfo
from tests.support.chart.helpers import CI_VALUES, Manifests, one
from tests.support.servers.prometheus import prometheus_server

pytestmark = pytest.mark.services
MONITORING = next(p for p in CI_VALUES if p.name == "monitoring-values.yaml")
FIELDS = {"sourceLabels": "source_labels", "targetLabel": "target_label"}


def relabel_configs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{FIELDS.get(k, k): v for k, v in item.items()} for item in items]


def scrape_config(name: str, endpoint: dict[str, Any], groups: list[dict[str, Any]]) -> dict:
    assert "honorLabels" not in endpoint, "the point: no honor labels"
    return {
        "job_name": name,
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": groups,
        "relabel_configs": relabel_configs(endpoint.get("relabelings", [])),
        "metric_relabel_configs": relabel_configs(endpoint.get("metricRelabelings", [])),
    }


def value(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_monitors_keep_the_finetunejob_labels_without_honor_labels(
    render: Callable[..., Manifests], tmp_path
) -> None:
    manifests = render(MONITORING)
    pod_endpoint = one(manifests, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    svc_endpoint = one(manifests, "ServiceMonitor")["spec"]["endpoints"][0]

    trainer = PrometheusSink(0, addr="127.0.0.1")
    trainer.on_start(RunInfo("ml", "llama", 1, "s3://b/ml/llama"), {})
    trainer.on_log(LogRow(step=7, total_steps=10, epoch=0.7, loss=1.5, tokens_seen=700))
    operator = OperatorMetrics()
    server = operator.serve(0, "127.0.0.1")
    operator.restarts.labels("ml", "llama", "PodLost").inc()
    operator.set_phase("ml", "llama", "Running", (1000.0, "PodsRunning"))
    address = f"127.0.0.1:{trainer.port}"
    pod = "__meta_kubernetes_pod_label_"
    index = f"{pod}batch_kubernetes_io_job_completion_index"
    rank = {"namespace": "ml", f"{pod}kubetune_io_job": "llama"}
    trainer_groups = [
        {"targets": [address], "labels": {**rank, index: "0"}},
        # Rank 1 of the same job (another pod, same address here): the PodMonitor drops it.
        {"targets": [address], "labels": {**rank, index: "1", "pod": "r1"}},
    ]
    operator_groups = [
        {"targets": [f"127.0.0.1:{server.server_port}"], "labels": {"namespace": "kubetune"}}
    ]
    configs = [
        scrape_config("kubetune/kt-kubetune-trainer", pod_endpoint, trainer_groups),
        scrape_config("kt-kubetune-metrics", svc_endpoint, operator_groups),
    ]
    try:
        with prometheus_server([], tmp_path / "prom", scrape_configs=configs) as prom:
            mine = '{namespace="ml",finetunejob="llama"}'
            prom.wait_for(f"kubetune_train_step{mine} == 7", timeout=60)
            prom.wait_for(f"kubetune_job_restarts_total{mine}", timeout=60)
            assert value(prom.query(f"kubetune_train_tokens_total{mine}")) == 700
            trainer_job = '{job="kubetune/kt-kubetune-trainer"}'
            assert value(prom.query(f"kubetune_train_loss{trainer_job}")) == 1.5
            # One trainer target (rank 0), up, labelled with its FineTuneJob: what
            # KubetuneTrainerScrapeDown joins on.
            assert value(prom.query('up{finetunejob!=""}')) == 1
            assert value(prom.query(f"up{mine}")) == 1
            # The operator's per-job series: the FineTuneJob's namespace, not the operator's.
            phase = f'kubetune_job_phase_timestamp_seconds{mine[:-1]},phase="Running"}}'
            assert value(prom.query(phase)) == 1000
            assert value(prom.query('kubetune_jobs{phase="Running",namespace="kubetune"}')) == 1
            # Nothing renamed, nothing duplicated.
            for label in ("exported_namespace", "exported_finetunejob", "exported_job"):
                assert prom.query(f'{{{label}!=""}}') == [], label
    finally:
        trainer.close()
        server.shutdown()
        server.server_close()
