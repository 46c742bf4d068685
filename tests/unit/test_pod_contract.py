"""The trainer pod -> operator contract (kubetune_api): the termination summary and the
metric names the operator reads. Each test fails if one side drifts from the other.

The summary a real training run writes is checked strictly against the model in
tests/trainer/engine/test_lora.py (success) and test_failures.py (failures)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from kubetune_api.constants import TrainerMetric
from kubetune_api.status import AdapterArtifact
from kubetune_api.termination import LINE_LIMIT, TerminationSummary
from kubetune_operator import progress
from kubetune_trainer.reporting.prometheus import METRICS, PrometheusSink
from kubetune_trainer.reporting.sinks import LogRow, RunInfo


def test_the_trainer_exports_every_metric_the_operator_reads() -> None:
    exposed = {f"{m.name}_total" if m.kind == "counter" else m.name for m in METRICS}
    assert set(TrainerMetric.OPERATOR_READS) <= exposed
    assert set(progress._NAMES) == set(TrainerMetric.OPERATOR_READS)


def test_the_operator_reads_progress_from_the_trainers_real_endpoint() -> None:
    """The trainer's exporter over HTTP, parsed by the operator's reader: every value the
    operator reads arrives (a renamed family or a lost _total suffix would drop one)."""
    sink = PrometheusSink(0, addr="127.0.0.1")
    try:
        sink.on_start(RunInfo("team-a", "llama-lora", 1, "/tmp/unused"), {})
        sink.on_log(LogRow(step=40, total_steps=100, epoch=0.4, loss=1.25, eval_loss=1.5,
                           tokens_seen=9000))  # fmt: skip
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics").read().decode()
    finally:
        sink.close()
    assert progress.parse_metrics(text) == {
        "step": 40, "total_steps": 100, "epoch": 0.4, "loss": 1.25, "eval_loss": 1.5,
        "tokens": 9000,
    }  # fmt: skip


DONE = TerminationSummary(
    phase="done", message="training finished", exit_code=0, step=100, loss=0.5, eval_loss=0.7,
    base_eval_loss=1.1, checkpoint="s3://b/ns/j/checkpoints/step-000100",
    adapter_uri="s3://b/ns/j/adapter", adapter_sha256="ab" * 32, adapter_size=1234,
)  # fmt: skip


def test_one_spelling_round_trips_and_gives_the_status_adapter() -> None:
    line = DONE.to_line()
    assert json.loads(line)["adapter_uri"] == "s3://b/ns/j/adapter"  # snake_case on the wire
    assert TerminationSummary.model_validate_json(line) == DONE  # strict: nothing unknown
    assert TerminationSummary.read(f"some log\n{line}\n") == DONE
    assert DONE.adapter() == AdapterArtifact(uri="s3://b/ns/j/adapter", sha256="ab" * 32,
                                             size_bytes=1234)  # fmt: skip
    assert TerminationSummary(message="x").adapter() is None
    # None is left out of the line, not written as null.
    assert json.loads(TerminationSummary(phase="setup", message="m").to_line()) == {
        "phase": "setup", "message": "m"}  # fmt: skip


def test_the_old_camelcase_spelling_is_not_read() -> None:
    """Only the spelling trainers have always written is read; the camelCase keys the
    operator used to accept too were never written by any trainer."""
    old = '{"lastCheckpoint": "s3://b/c", "adapter": {"uri": "s3://b/a"}, "message": "m"}'
    assert TerminationSummary.read(old) == TerminationSummary(message="m")
    with pytest.raises(ValueError, match="lastCheckpoint"):
        TerminationSummary.model_validate_json(old)


def test_an_untrusted_message_is_read_field_by_field_and_never_raises() -> None:
    text = json.dumps({"step": "7", "loss": 0.5, "checkpoint": ["x"], "future_key": 1,
                       "message": "peer lost", "exit_code": 75, "adapter_size": -1})  # fmt: skip
    assert TerminationSummary.read(text) == TerminationSummary(
        loss=0.5, message="peer lost", exit_code=75
    )
    assert TerminationSummary.read("Traceback ...\nRuntimeError: boom") == TerminationSummary(
        message="Traceback ...\nRuntimeError: boom"
    )
    assert TerminationSummary.read("x" * 900).message == "x" * 500  # the log's tail
    assert TerminationSummary.read("[1, 2]\n") == TerminationSummary(message="[1, 2]")
    assert TerminationSummary.read(None) == TerminationSummary.read("") == TerminationSummary()


def test_a_long_message_is_cut_never_the_json_even_with_escapes() -> None:
    for char in ("a", "\n", "é"):  # 1, 2 and 6 characters once JSON-escaped
        s = TerminationSummary(message=char * 5000, checkpoint="s3://b/c", exit_code=70)
        line = s.to_line()
        assert len(line) <= LINE_LIMIT and len(line.encode()) <= 4096
        back = TerminationSummary.model_validate_json(line)
        assert back.message.endswith("...") and back.checkpoint == "s3://b/c"


def test_a_diverged_loss_does_not_stop_the_summary() -> None:
    s = TerminationSummary(phase="training", message="loss is NaN", loss=float("nan"))
    assert s.loss is None and json.loads(s.to_line()) == {
        "phase": "training", "message": "loss is NaN"}  # fmt: skip
