"""Training from streamed data (dataset.streaming): it trains and checkpoints, and a run
stopped mid-epoch resumes at the right example: the batches after the resume are the
ones an uninterrupted run trains on, read by sampler position (not from the start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from kubetune_trainer.engine.main import execute
from tests.support.builders import make_job, write_qa_jsonl


class Seen(TrainerCallback):
    """The first tokens of every training example the model sees, by step; optionally
    fails right after the checkpoint of `die_at` is committed (a killed pod)."""

    def __init__(self, die_at: int | None = None) -> None:
        self.by_step: dict[int, list[tuple[int, ...]]] = {}
        self.die_at, self.step, self.hook = die_at, 0, None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        def record(module: Any, a: Any, kwargs: dict[str, Any]) -> None:
            if module.training:
                ids = kwargs["input_ids"][:, :12].tolist()
                self.by_step.setdefault(self.step, []).extend(tuple(x) for x in ids)

        self.hook = model.register_forward_pre_hook(record, with_kwargs=True)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.step = state.global_step + 1

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.die_at:
            raise RuntimeError("killed after the commit")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.hook is not None:
            self.hook.remove()


@pytest.mark.slow  # three short training runs (~25 s)
def test_streamed_run_resumes_mid_epoch_at_the_same_examples(
    tmp_path: Path, trainer_env: None
) -> None:
    source = write_qa_jsonl(tmp_path / "data.jsonl", 200)
    options = {"dataset": {"source": str(source), "streaming": True, "packing": "none"},
               "training": {"maxSteps": 8, "saveSteps": 3}}  # fmt: skip
    ref = Seen()
    code, _ = execute(make_job(tmp_path / "ref", **options), say=lambda s: None,
                      extra_callbacks=[ref])  # fmt: skip
    assert code == 0 and sorted(ref.by_step) == list(range(1, 9))

    job = make_job(tmp_path / "out", **options)
    first = Seen(die_at=3)  # ~180 examples, 4 a step: step 3 is mid-epoch
    code, _ = execute(job, say=lambda s: None, extra_callbacks=[first])
    assert code != 0 and sorted(first.by_step) == [1, 2, 3]
    again = Seen()
    code, result = execute(job, say=lambda s: None, extra_callbacks=[again])
    assert code == 0 and result is not None and result.resumed_from.endswith("step-000003")
    assert sorted(again.by_step) == list(range(4, 9))  # nothing before the position again
    for step in range(4, 9):
        assert again.by_step[step] == ref.by_step[step], step
