"""The Prometheus sink scraped by a real Prometheus (PromQL over its HTTP API) and pushed
to a real Pushgateway, driven by LogRows of a real (tiny) torch training loop."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import psutil
import pytest
import torch

from kubetune_trainer.reporting.local import JsonlSink, SinkFanout
from kubetune_trainer.reporting.prometheus import METRIC_NAMES, METRICS, PrometheusSink
from kubetune_trainer.reporting.sinks import LogRow, RunInfo

pytestmark = pytest.mark.services
SEL = '{namespace="team-a",finetunejob="tiny"}'
OBSERVABILITY = Path(__file__).resolve().parents[3] / "docs" / "observability.md"


def tiny_loop(steps: int) -> list[LogRow]:
    """A real optimisation (linear regression, SGD): decreasing losses, real grad norms."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rows = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        grad = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        opt.step()
        rows.append(
            LogRow(
                step=step,
                total_steps=steps,
                epoch=step / steps,
                loss=loss.item(),
                learning_rate=0.1,
                grad_norm=grad.item(),
                tokens_per_second=1000.0 + step,
                tokens_seen=1000 * step,
                eval_loss=loss.item() * 1.1 if step == steps else None,
                eta_seconds=float(steps - step),
                memory_bytes={"rss": psutil.Process(os.getpid()).memory_info().rss},
            )
        )
    return rows


def value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def documented_trainer_metrics(doc: str) -> set[str]:
    """The trainer's names in docs/observability.md's table (the row "| trainer ...").

    A counter is listed as it is read (`kubetune_train_tokens_total`); labels in braces and
    a `(histogram)` note are dropped.
    """
    row = next(line for line in doc.splitlines() if line.startswith("| trainer"))
    return set(re.findall(r"`(kubetune_[a-z_]+)(?:\{[^`]*\})?`", row))


def test_exported_names_are_the_documented_names() -> None:
    """What /metrics exports == the documented trainer list; no series is labelled `job`."""
    assert {m.name: m.kind for m in METRICS}["kubetune_checkpoint_seconds"] == "histogram"
    sink = PrometheusSink(0, addr="127.0.0.1")
    try:
        sink.on_start(RunInfo("ns", "j", 1, "/tmp/unused"), {})
        sink.on_log(LogRow(step=1, total_steps=2, epoch=0.5, loss=1.0, tokens_seen=10,
                           eval_loss=1.0, memory_bytes={"rss": 1}))  # fmt: skip
        sink.on_checkpoint("s3://b/c", 1, 0.1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics").read().decode()
    finally:
        sink.close()
    # The text format names a counter by its sample (`_total`); `_created` series are the
    # client's start times, not metrics of ours.
    types = dict(re.findall(r"^# TYPE (kubetune_\S+) (\w+)", text, re.MULTILINE))
    exported = {name for name in types if not name.endswith("_created")}
    read_as = {f"{m.name}_total" if m.kind == "counter" else m.name for m in METRICS}
    assert exported == read_as and len(METRIC_NAMES) == len(exported)
    assert types["kubetune_train_tokens_total"] == "counter"
    labels = set(re.findall(r"[{,](\w+)=", text))
    assert labels == {"namespace", "finetunejob", "kind", "le"}, labels
    assert documented_trainer_metrics(OBSERVABILITY.read_text(encoding="utf-8")) == read_as


def test_eval_loss_rises_counts_evaluations_in_a_row() -> None:
    sink = PrometheusSink(0, addr="127.0.0.1")
    try:
        sink.on_start(RunInfo("ns", "j", 1, "/tmp/unused"), {})
        rises = []
        for loss in (2.0, 1.5, 1.6, 1.7, float("nan"), 1.8, 1.2, 1.3):
            sink.on_log(LogRow(step=1, total_steps=9, epoch=0.1, eval_loss=loss))
            rises.append(sink.gauges["kubetune_eval_loss_rises"].labels("ns", "j")._value.get())
            sink.on_log(LogRow(step=1, total_steps=9, epoch=0.1, loss=9.0))  # no eval: no change
    finally:
        sink.close()
    # A NaN evaluation is neither a rise nor a fall (KubetuneLossNotFinite reports it).
    assert rises == [0, 0, 1, 2, 2, 3, 0, 1]


def test_prometheus_scrapes_the_sink_and_the_pushgateway(
    prometheus_server, pushgateway_server
) -> None:
    rows = tiny_loop(4)
    assert rows[-1].loss < rows[0].loss
    sink = PrometheusSink(0, addr="127.0.0.1", pushgateway_url=pushgateway_server.url)
    # The sink is scraped without honor_labels; the Pushgateway with it (as it must be).
    with prometheus_server([f"127.0.0.1:{sink.port}"], [pushgateway_server.address]) as prom:
        sink.on_start(RunInfo("team-a", "tiny", 1, "s3://b/runs/team-a/tiny"), {})
        for row in rows:
            sink.on_log(row)
            # Hold each step until Prometheus has scraped it: every step becomes a sample.
            prom.wait_for(f"kubetune_train_step{SEL} == {row.step}", timeout=60)
        sink.on_checkpoint("s3://b/runs/team-a/tiny/checkpoints/step-000002", 2, 0.7)
        sink.on_checkpoint("s3://b/runs/team-a/tiny/checkpoints/step-000004", 4, 3.0)
        prom.wait_for(f"kubetune_checkpoint_seconds_count{SEL} == 2", timeout=60)
        age = value(prom.query(f"time() - kubetune_checkpoint_timestamp_seconds{SEL}"))
        assert 0 <= age < 60

        own = f'{{namespace="team-a",finetunejob="tiny",instance="127.0.0.1:{sink.port}"}}'
        assert value(prom.query(f"kubetune_train_loss{own}")) == pytest.approx(rows[-1].loss)
        assert value(prom.query(f"max_over_time(kubetune_train_loss{own}[10m])")) == (
            pytest.approx(rows[0].loss)
        )
        assert value(prom.query(f"kubetune_train_total_steps{own}")) == 4
        assert value(prom.query(f"kubetune_train_learning_rate{own}")) == pytest.approx(
            rows[-1].learning_rate
        )
        assert value(prom.query(f"kubetune_train_eta_seconds{own}")) == 0.0
        assert value(prom.query(f"kubetune_train_epoch{own}")) == 1.0
        assert value(prom.query(f"kubetune_eval_loss{own}")) == pytest.approx(rows[-1].eval_loss)
        assert value(prom.query(f"kubetune_train_grad_norm{own}")) == pytest.approx(
            rows[-1].grad_norm
        )
        assert value(prom.query(f"kubetune_train_tokens_total{own}")) == 4000.0
        assert value(prom.query(f"rate(kubetune_train_tokens_total{own}[1m])")) > 0
        assert value(prom.query('kubetune_memory_bytes{finetunejob="tiny",kind="rss"}')) > 1e6
        # One checkpoint took <= 1 s, the other between 2.5 and 5 s.
        le1 = 'kubetune_checkpoint_seconds_bucket{finetunejob="tiny",le="1.0"}'
        assert value(prom.query(le1)) == 1
        assert value(prom.query(f"kubetune_checkpoint_seconds_sum{own}")) == pytest.approx(3.7)
        # Without honor_labels nothing was renamed: `job` is the scrape job's own.
        assert prom.query('{exported_job!=""}') == prom.query('{exported_namespace!=""}') == []
        assert value(prom.query('count(kubetune_train_step{job="kubetune"})')) == 1

        sink.on_end({"steps": 4}, None)  # pushes the final values, then closes the endpoint
        # The Pushgateway exposes instance="" and honor_labels keeps it: the series from the
        # push is the one without an instance (the sink's own carries its address).
        pushed = 'kubetune_train_step{finetunejob="tiny",namespace="team-a",instance=""}'
        assert value(prom.wait_for(pushed, timeout=60)) == 4
        pushed_text = 'finetunejob="tiny",instance="",job="kubetune",namespace="team-a"} 4'
        assert f"kubetune_train_step{{{pushed_text}" in pushgateway_server.metrics_text()


def test_engine_hook_serves_on_the_spec_port_or_a_free_one_when_busy(monkeypatch) -> None:
    import socket

    from kubetune_api.loader import parse_job
    from kubetune_trainer.reporting.prometheus import sink_for

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBETUNE_METRICS_PORT", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = {"model": {"base": "builtin:tiny-llama"}, "dataset": {"source": "d.jsonl"},
                "metrics": {"port": port}}  # fmt: skip
        job = parse_job({"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
                         "metadata": {"name": "j", "namespace": "ns"}, "spec": spec})  # fmt: skip
        run = RunInfo("ns", "j", 1, "/tmp/unused")
        sink = sink_for(job, run)
        try:
            assert sink is not None and sink.port not in (0, port) and sink.addr == "127.0.0.1"
        finally:
            sink.close()
        assert sink_for(job, RunInfo("ns", "j", 1, "/tmp/unused", rank=1)) is None


def test_gauge_rows_reach_prometheus_only_and_a_failing_sink_never_ends_the_run(
    tmp_path: Path,
) -> None:
    """ETA and memory-mark rows (SinkFanout.on_gauges): Prometheus sets its gauges,
    metrics.jsonl gets no extra row, and a sink raising is logged, not raised."""

    class Broken:
        def on_gauges(self, row: LogRow) -> None:
            raise RuntimeError("dashboard down")

    prom = PrometheusSink(0, addr="127.0.0.1")
    jsonl = JsonlSink(tmp_path / "metrics.jsonl")
    try:
        fanout = SinkFanout([Broken(), jsonl, prom])
        fanout.on_start(RunInfo("ns", "j", 1, "/tmp/unused"), {})
        row = LogRow(step=3, total_steps=9, epoch=0.1, eta_seconds=42.0)
        row.memory_bytes = {"used": 7, "limit": 10}
        fanout.on_gauges(row)
        text = urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/metrics").read().decode()
    finally:
        prom.close()
    assert 'kubetune_train_eta_seconds{finetunejob="j",namespace="ns"} 42.0' in text
    assert re.search(r'kubetune_memory_bytes\{[^}]*kind="used"[^}]*\} 7\.0', text)
    assert not (tmp_path / "metrics.jsonl").exists()  # one row per logging step only
