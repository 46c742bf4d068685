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

from kubetune_trainer.metrics import METRIC_NAMES, METRICS, PrometheusSink
from kubetune_trainer.sinks import LogRow, RunInfo

pytestmark = pytest.mark.services
SEL = '{namespace="team-a",job="tiny"}'
# DESIGN.md is in shared/, beside the repository (read-only; CI lays a copy there too).
DESIGN = Path(__file__).resolve().parents[4] / "shared" / "DESIGN.md"
# Exported on purpose although DESIGN.md's list lacks them:
DOCUMENTED_EXTRAS = {
    # The remaining-time estimate: the console bar and the notebook print it, and the
    # operator's status.progress.etaSeconds means the same thing.
    "kubetune_train_eta_seconds",
}


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
                eval_loss=loss.item() * 1.1 if step == steps else None,
                eta_seconds=float(steps - step),
                memory_bytes={"rss": psutil.Process(os.getpid()).memory_info().rss},
            )
        )
    return rows


def value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def design_trainer_metrics(design: str) -> set[str]:
    """The trainer's names in DESIGN.md's "## Metrics" section ("Trainer: ... Operator:").

    A name written `_suffix` continues the prefix of the last full name before it
    (`kubetune_train_loss`, `_learning_rate` -> kubetune_train_learning_rate); labels in
    braces are dropped.
    """
    section = design.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    trainer = section.split("Trainer:", 1)[1].split("Operator:", 1)[0]
    names, prefix = set(), ""
    for token in re.findall(r"`([^`]+)`", trainer):
        name = token.split("{", 1)[0]
        if name.startswith("_"):
            name = prefix + name
        else:
            prefix = name.rsplit("_", 1)[0]
        names.add(name)
    return names


def test_exported_names_are_design_names() -> None:
    """What /metrics exports == DESIGN.md's trainer list + the extras named above."""
    assert {m.name: m.kind for m in METRICS}["kubetune_checkpoint_seconds"] == "histogram"
    sink = PrometheusSink(0, addr="127.0.0.1")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics").read().decode()
    finally:
        sink.close()
    exported = set(re.findall(r"^# TYPE (kubetune_\S+) ", text, re.MULTILINE))
    assert exported == set(METRIC_NAMES) and len(METRIC_NAMES) == len(exported)
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} is not here (shared/ is laid beside the repository)")
    design = design_trainer_metrics(DESIGN.read_text(encoding="utf-8"))
    assert {"kubetune_train_learning_rate", "kubetune_checkpoint_seconds"} <= design  # parsed
    assert not design & DOCUMENTED_EXTRAS, "DESIGN.md lists it now: drop it from the extras"
    assert exported == design | DOCUMENTED_EXTRAS


def test_prometheus_scrapes_the_sink_and_the_pushgateway(
    prometheus_server, pushgateway_server
) -> None:
    rows = tiny_loop(4)
    assert rows[-1].loss < rows[0].loss
    sink = PrometheusSink(0, addr="127.0.0.1", pushgateway_url=pushgateway_server.url)
    targets = [f"127.0.0.1:{sink.port}", pushgateway_server.address]
    with prometheus_server(targets) as prom:
        sink.on_start(RunInfo("team-a", "tiny", 1, "s3://b/runs/team-a/tiny"), {})
        for row in rows:
            sink.on_log(row)
            # Hold each step until Prometheus has scraped it: every step becomes a sample.
            prom.wait_for(f"kubetune_train_step{SEL} == {row.step}", timeout=60)
        sink.on_checkpoint("s3://b/runs/team-a/tiny/checkpoints/step-000002", 2, 0.7)
        sink.on_checkpoint("s3://b/runs/team-a/tiny/checkpoints/step-000004", 4, 3.0)
        prom.wait_for(f"kubetune_checkpoint_seconds_count{SEL} == 2", timeout=60)

        own = f'{{namespace="team-a",job="tiny",instance="127.0.0.1:{sink.port}"}}'
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
        assert value(prom.query(f"kubetune_train_tokens_per_second{own}")) == 1004.0
        assert value(prom.query('kubetune_memory_bytes{job="tiny",kind="rss"}')) > 1e6
        # One checkpoint took <= 1 s, the other between 2.5 and 5 s.
        le1 = 'kubetune_checkpoint_seconds_bucket{job="tiny",le="1.0"}'
        assert value(prom.query(le1)) == 1
        assert value(prom.query(f"kubetune_checkpoint_seconds_sum{own}")) == pytest.approx(3.7)
        # honor_labels kept our `job` label; nothing was renamed to exported_job.
        assert prom.query('{exported_job!=""}') == []

        sink.on_end({"steps": 4}, None)  # pushes the final values, then closes the endpoint
        # The Pushgateway exposes instance="" and honor_labels keeps it: the series from the
        # push is the one without an instance (the sink's own carries its address).
        pushed = 'kubetune_train_step{job="tiny",namespace="team-a",instance=""}'
        assert value(prom.wait_for(pushed, timeout=60)) == 4
        assert 'kubetune_train_step{instance="",job="tiny",namespace="team-a"} 4' in (
            pushgateway_server.metrics_text()
        )


def test_engine_hook_serves_on_the_spec_port_or_a_free_one_when_busy(monkeypatch) -> None:
    import socket

    from kubetune_api.loader import parse_job
    from kubetune_trainer.metrics import sink_for

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
