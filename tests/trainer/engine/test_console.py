"""The console sink: a progress bar with the engine's ETA in a terminal, plain rows elsewhere."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from kubetune_trainer.reporting.local import ConsoleSink, JsonlSink, SinkFanout
from kubetune_trainer.reporting.sinks import LogRow


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def row(step: int, **values: float) -> LogRow:
    return LogRow(step=step, total_steps=20, epoch=step / 10, **values)


def _train_rows(sink: ConsoleSink) -> None:
    sink.on_log(row(6, loss=1.2345, learning_rate=2e-4, tokens_per_second=1234.0,
                    eta_seconds=125.0, grad_norm=0.5))  # fmt: skip
    sink.on_checkpoint("runs/test/t/checkpoints/step-000006", 6, 0.4)
    sink.on_log(row(6, eval_loss=1.5))


def test_in_a_terminal_a_bar_from_the_resumed_step_with_eta_and_the_last_row() -> None:
    out = Terminal()
    sink = ConsoleSink(0, out, redraw_seconds=0)  # every update drawn
    sink.on_train_begin(5, 20)  # resumed at step 5 of 20
    first = out.getvalue()
    assert "step 5/20 [00:00, eta ?]" in first and " 25%|" in first
    _train_rows(sink)
    sink.on_step(7)
    text = out.getvalue()
    last = text.replace("\n", "\r").split("\r")
    bar = [x for x in last if "step 7/20" in x][-1]
    # The engine's own ETA and the last train row's values, with the latest eval loss.
    assert "eta 0:02:05, loss 1.2345, eval_loss 1.5000, lr 2.00e-04, tokens/s 1,234" in bar
    assert "35%|" in bar
    # Checkpoint and eval lines are printed above the bar, each on a line of its own.
    lines = text.splitlines()
    assert any(x.endswith("checkpoint step 6 committed to runs/test/t/checkpoints/step-000006 "
                          "(0.4 s)") for x in lines)  # fmt: skip
    assert any("step 6/20  epoch 0.60  eval_loss 1.5000" in x for x in lines)
    sink.close()
    assert sink.bar is None


def test_elsewhere_every_row_is_a_plain_line() -> None:
    out = io.StringIO()  # a pipe or a pod log: isatty() is False
    sink = ConsoleSink(0, out)
    sink.on_train_begin(5, 20)
    _train_rows(sink)
    sink.on_step(7)
    sink.close()
    assert out.getvalue().splitlines() == [
        "step 6/20  epoch 0.60  loss 1.2345  lr 2.00e-04  grad_norm 0.500  tokens/s 1,234  "
        "eta 0:02:05",
        "checkpoint step 6 committed to runs/test/t/checkpoints/step-000006 (0.4 s)",
        "step 6/20  epoch 0.60  eval_loss 1.5000",
    ]


def test_other_ranks_print_nothing() -> None:
    out = Terminal()
    sink = ConsoleSink(1, out)
    sink.on_train_begin(0, 20)
    _train_rows(sink)
    assert out.getvalue() == ""


def test_the_bar_hooks_are_optional_for_other_sinks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = Terminal()
    jsonl = JsonlSink(tmp_path / "metrics.jsonl")
    fan = SinkFanout([jsonl, ConsoleSink(0, out)])
    with caplog.at_level(logging.WARNING):
        fan.on_train_begin(0, 20)
        fan.on_step(1)
        fan.on_log(row(1, loss=2.0))
    assert caplog.text == "" and not fan._failed  # metrics.jsonl has no bar: not a failure
    assert "step 1/20" in out.getvalue()
    assert jsonl.path.read_text().count("\n") == 1


def test_the_objectives_headline_metrics_are_printed_the_rest_only_recorded() -> None:
    out = io.StringIO()
    sink = ConsoleSink(0, out)
    train = row(6, loss=0.6)
    train.extra = {"rewards/accuracies": 0.75, "rewards/margins": 0.1234, "rewards/chosen": 0.3}
    evals = row(6, eval_loss=0.5)
    evals.extra = {"eval_ordering_accuracy": 0.5, "eval_perplexity": 1.6487, "eval_num_tokens": 9}
    sink.on_log(train)
    sink.on_log(evals)
    assert out.getvalue().splitlines() == [
        "step 6/20  epoch 0.60  loss 0.6000  rewards/accuracies 0.7500  rewards/margins 0.1234",
        "step 6/20  epoch 0.60  eval_loss 0.5000  eval_ordering_accuracy 0.5000  "
        "eval_perplexity 1.6487",
    ]
