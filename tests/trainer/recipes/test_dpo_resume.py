"""DPO and ranking checkpoint and resume like SFT: a run stopped after its step-3
checkpoint and resumed to step 6 logs the same losses as an uninterrupted 6-step run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.engine.main import execute
from tests.support.trainer.preference import (
    SUFFIXES,
    preference_job,
    prepared_dpo,
    prepared_ranked,
    tiny_base,
)


def _losses(run_uri: str) -> dict[int, float]:
    rows = [
        json.loads(x) for x in (Path(run_uri) / "report" / "metrics.jsonl").read_text().splitlines()
    ]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


# objective -> (data, spec.training options). Ranking: a margin no pair reaches in 6 steps,
# so every compared loss is non-zero (a zero loss would compare nothing).
CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "dpo": (lambda: prepared_dpo(SUFFIXES[0], SUFFIXES[1], n=16), {}),
    "ranking": (lambda: prepared_ranked(SUFFIXES, n=16),
                {"learningRate": 0.005, "ranking": {"margin": 2.0}}),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(CASES))
def test_resume_matches_uninterrupted(objective: str, tmp_path: Path) -> None:
    base = tiny_base()
    data, options = CASES[objective]
    prepared = data()

    def job(out: str, steps: int):  # type: ignore[no-untyped-def]
        return preference_job(out, objective, name="r", model={"base": base},
                        training={"maxSteps": steps, "saveSteps": 3, **options})  # fmt: skip

    code, ref = execute(job(str(tmp_path / "ref"), 6), prepared=prepared, say=lambda s: None)
    assert code == 0 and ref is not None and ref.resumed_from is None
    out = str(tmp_path / "out")
    code, first = execute(job(out, 3), prepared=prepared, say=lambda s: None)
    assert code == 0 and first is not None
    code, resumed = execute(job(out, 6), prepared=prepared, say=lambda s: None)
    assert code == 0 and resumed is not None
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step-000003")
    got, want = _losses(resumed.run_uri), _losses(ref.run_uri)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5, 6]
    assert min(want.values()) > 0.05, want  # a curve, not zeros
    assert len({round(v, 6) for v in want.values()}) > 1, want  # that moves with training
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-5), step
    assert resumed.tuned_eval_loss == pytest.approx(ref.tuned_eval_loss, abs=1e-5)
