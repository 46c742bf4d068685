"""The demo as a test: examples/quickstart.yaml on the real pretrained SmolLM2-135M-Instruct
(GGUF from PyPI) lowers held-out loss clearly and raises format compliance; the GGUF
conversion is cached atomically and reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_api.loader import load_job
from kubetune_trainer.engine.main import execute
from kubetune_trainer.modeling import builtin

ROOT = Path(__file__).parents[3]


@pytest.mark.slow
def test_quickstart_lowers_loss_and_raises_format_compliance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the example's data path is relative to the repository
    job = load_job(ROOT / "examples" / "quickstart.yaml")
    code, res = execute(job, output=str(tmp_path / "runs"), say=lambda s: None)
    assert code == 0 and res is not None
    assert res.tuned_eval_loss < res.base_eval_loss - 1.0, (res.base_eval_loss,
                                                            res.tuned_eval_loss)  # fmt: skip
    # The evidence a user sees in the report: the tuned model follows the answer layout.
    evaluation = res.report["evaluation"]
    base, tuned = evaluation["base"]["metrics"], evaluation["tuned"]["metrics"]
    assert evaluation["tuned"]["generation"] == evaluation["base"]["generation"]
    assert tuned["format_compliance"] > base["format_compliance"] + 0.25, (base, tuned)
    assert tuned["citation_rate"] > base["citation_rate"] + 0.25, (base, tuned)
    assert tuned["rouge_l"] > base["rouge_l"], (base, tuned)
    # The converted checkpoint is a complete cache entry, reused (not rebuilt) next time.
    converted = builtin.smollm2_dir()
    assert (converted / ".complete").is_file() and (converted / "model.safetensors").is_file()
    mtime = (converted / "model.safetensors").stat().st_mtime
    assert builtin.smollm2_dir() == converted
    assert (converted / "model.safetensors").stat().st_mtime == mtime
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
