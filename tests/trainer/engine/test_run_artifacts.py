"""What one real run leaves behind: checkpoints (every saveSteps and at each epoch end, the
newest N plus the best), their contents, metrics.jsonl rows, the report and the adapter.

One run serves every test here: tiny Llama, 28 examples unpacked = 7 steps per epoch,
2 epochs, saveSteps 5, evalSteps 5, keepLastCheckpoints 1, no early stopping. The training
answers are "yes" and the held-out answers "no": eval loss falls while the model learns
the layout, then rises as it learns "yes", so the best checkpoint is not the newest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from kubetune_trainer.engine.adapter import read_back, upload_adapter
from kubetune_trainer.engine.main import execute
from kubetune_trainer.errors import RetryableError
from kubetune_trainer.records import PreparedDataset
from kubetune_trainer.reporting.report import curve_figure, curve_series
from kubetune_trainer.storage import LocalStore, open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.builders import COLORS, ITEMS, make_job

STEPS_PER_EPOCH, EPOCHS, BATCH = 7, 2, 4
TOTAL = STEPS_PER_EPOCH * EPOCHS


def yes_no(n: int, seed: int, answer: str) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    return [{"prompt": f"Is the {rnd.choice(ITEMS)} {rnd.choice(COLORS)}?", "completion": answer}
            for _ in range(n)]  # fmt: skip


def dataset() -> PreparedDataset:
    train, held_out = yes_no(STEPS_PER_EPOCH * BATCH, 1, "yes"), yes_no(12, 2, "no")
    return PreparedDataset("sft", "qa", train, held_out, "sha256:test")


@pytest.fixture(scope="module")
def run(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:  # trainer_env, for the whole module
        mp.setenv("KUBETUNE_CACHE", str(model_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("KUBETUNE_TERMINATION_LOG", str(tmp / "termination-log"))
        mp.delenv("KUBETUNE_OUTPUT_URI", raising=False)
        job = make_job(
            tmp / "out", name="art",
            dataset={"packing": "none"},
            training={"maxSteps": None, "epochs": EPOCHS, "microBatchSize": BATCH,
                      "saveSteps": 5, "evalSteps": 5, "keepLastCheckpoints": 1},
        )  # fmt: skip
        said: list[str] = []
        console = io.StringIO()  # the console sink writes to stderr: not a terminal here
        with contextlib.redirect_stderr(console):
            code, res = execute(job, prepared=dataset(), say=said.append)
        assert code == 0 and res is not None, console.getvalue()[-3000:]
        run_dir = Path(res.run_uri)
        rows = [
            json.loads(x) for x in (run_dir / "report" / "metrics.jsonl").read_text().splitlines()
        ]
        yield {"res": res, "said": said, "console": console.getvalue(), "rows": rows,
               "run_dir": run_dir, "tmp": tmp}  # fmt: skip


def _evals_during_training(rows: list[dict[str, Any]]) -> dict[int, float]:
    # The evaluations the Trainer ranks checkpoints by (every evalSteps and the last step);
    # the tuned loss reuses the last step's, so no extra row follows it.
    return {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}


def test_a_checkpoint_every_save_steps_and_at_each_epoch_end(run: dict[str, Any]) -> None:
    commits = re.findall(r"^checkpoint step (\d+) committed to (\S+) ", run["console"], re.M)
    assert [int(s) for s, _ in commits] == [5, 7, 10, 14]  # 5, 10 by saveSteps; 7, 14 epochs
    for step, uri in commits:
        assert uri == str(run["run_dir"] / "checkpoints" / f"step-{int(step):06d}")


def test_keep_last_1_still_keeps_the_best_checkpoint_by_eval_loss(run: dict[str, Any]) -> None:
    evals = _evals_during_training(run["rows"])
    assert sorted(evals) == [5, 10, TOTAL]
    best = min(evals, key=evals.__getitem__)
    assert best != TOTAL, evals  # else retention would keep it anyway, as the newest
    kept = sorted(p.name for p in (run["run_dir"] / "checkpoints").iterdir())
    assert kept == [f"step-{best:06d}", f"step-{TOTAL:06d}"]  # the best beside the newest
    uri = run["res"].report["results"]["best_checkpoint"]
    assert uri == str(run["run_dir"] / "checkpoints" / f"step-{best:06d}")


def test_a_checkpoint_holds_everything_a_resume_needs(run: dict[str, Any]) -> None:
    ckpts = CheckpointStore(open_store(str(run["run_dir"])))
    newest = ckpts.latest()
    assert newest is not None and newest.step == TOTAL
    folder = ckpts.fetch(newest, run["tmp"] / "fetched")  # every sha256 verified
    names = {p.name for p in folder.iterdir()}
    assert {
        "adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
        "rng_state.pth", "trainer_state.json", "kubetune_state.json", "MANIFEST.json",
    } <= names  # fmt: skip
    assert set(newest.manifest["files"]) == names - {"MANIFEST.json"}
    state = json.loads((folder / "kubetune_state.json").read_text())
    assert state["data_position"] == {
        "global_step": TOTAL,
        "epoch": float(EPOCHS),
        "examples_seen": TOTAL * BATCH,
    }
    assert state["data_fingerprint"] == "sha256:test"
    assert "base_eval_loss" not in state  # evaluated after training, not before step 1
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == TOTAL
    optimizer = torch.load(folder / "optimizer.pt", weights_only=False)
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        lora = list(f.keys())
    assert lora and all(".lora_" in n for n in lora)
    assert len(optimizer["state"]) == len(lora)  # AdamW moments of every LoRA tensor
    assert all(s["step"].item() == TOTAL for s in optimizer["state"].values())
    assert torch.load(folder / "scheduler.pt", weights_only=False)["last_epoch"] == TOTAL
    rng = torch.load(folder / "rng_state.pth", weights_only=False)
    assert {"python", "numpy", "cpu"} <= rng.keys()


def test_the_base_is_evaluated_after_training_not_before_the_first_step(
    run: dict[str, Any],
) -> None:
    said = run["said"]
    base = [i for i, s in enumerate(said) if s.startswith("base eval loss")]
    first = [i for i, s in enumerate(said) if s.startswith("memory at first step")]
    saves = [i for i, s in enumerate(said) if s.startswith("memory at checkpoint")]
    assert len(base) == 1 and first and saves, said
    assert base[0] > max(saves) > first[0], said
    assert run["res"].base_eval_loss is not None


def test_every_logged_row_carries_the_training_signals(run: dict[str, Any]) -> None:
    train = [r for r in run["rows"] if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, TOTAL + 1))  # loggingSteps 1
    for r in train:
        for key in ("loss", "learning_rate", "grad_norm", "tokens_per_second", "eta_seconds"):
            assert isinstance(r.get(key), float), (key, r)
        assert r["learning_rate"] == pytest.approx(0.02)  # constant scheduler
        assert r["tokens_per_second"] > 0 and r["memory_bytes"]["rss"] > 0
        assert r["total_steps"] == TOTAL
    assert train[-1]["eta_seconds"] == 0.0 and train[0]["eta_seconds"] > 0
    evals = [r for r in run["rows"] if "eval_loss" in r]
    # The last step's evaluation is the tuned loss: the final weights are not evaluated twice.
    assert [r["step"] for r in evals] == [5, 10, TOTAL]
    assert run["res"].tuned_eval_loss == evals[-1]["eval_loss"]
    for r in evals:
        assert r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"]))
        assert "loss" not in r and r["memory_bytes"]["rss"] > 0


def test_report_has_the_results_the_hyperparameters_and_both_curves(run: dict[str, Any]) -> None:
    res, report_dir = run["res"], run["run_dir"] / "report"
    report = json.loads((report_dir / "report.json").read_text())
    results = report["results"]
    train = [r for r in run["rows"] if "loss" in r]
    assert results["base_eval_loss"] == pytest.approx(res.base_eval_loss)
    assert results["tuned_eval_loss"] == pytest.approx(res.tuned_eval_loss)
    assert results["final_train_loss"] == pytest.approx(train[-1]["loss"])
    assert results["steps"] == TOTAL and results["epochs_done"] == EPOCHS
    assert 0 < report["training_seconds"] <= report["total_seconds"]
    hp = report["hyperparameters"]
    assert (hp["learning_rate"], hp["micro_batch_size"], hp["epochs"], hp["seed"]) == (
        0.02, BATCH, EPOCHS, 7,
    )  # fmt: skip
    assert (hp["lora_r"], hp["lora_alpha"], hp["scheduler"]) == (8, 16, "constant")
    md = (report_dir / "report.md").read_text()
    base, tuned = res.base_eval_loss, res.tuned_eval_loss
    assert f"| base (adapter off) | {base:.4f} | {math.exp(base):.2f} |" in md
    assert f"| tuned | {tuned:.4f} | {math.exp(tuned):.2f} |" in md
    assert f"Final train loss {train[-1]['loss']:.4f}" in md
    assert (report_dir / "loss_curve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![loss curve](loss_curve.png)" in md
    # The plotted data: every train row, and eval from the base (step 0) to the tuned loss.
    series = curve_series(run["rows"], base, tuned, TOTAL)
    assert series["train loss"] == [(r["step"], r["loss"]) for r in train]
    evals = _evals_during_training(run["rows"])
    assert evals[TOTAL] == pytest.approx(tuned)  # no load-best-at-end: the last model
    assert series["eval loss"] == [(0, base), *sorted(evals.items())]


def test_a_short_run_still_plots_train_and_eval_loss_with_markers() -> None:
    # Two steps and no interval eval: the eval curve is base (step 0) -> tuned (last step).
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    series = curve_series(rows, base_eval_loss=2.2, tuned_eval_loss=1.4, final_step=2)
    assert series == {"train loss": [(1, 2.0), (2, 1.5)], "eval loss": [(0, 2.2), (2, 1.4)]}
    lines = curve_figure(series).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train loss", "eval loss"]
    assert all(line.get_marker() not in (None, "None", "") for line in lines)
    assert [list(line.get_ydata()) for line in lines] == [[2.0, 1.5], [2.2, 1.4]]
    # One logged point is still drawn (a line alone would be invisible).
    assert curve_series([{"step": 1, "loss": 2.0}]) == {"train loss": [(1, 2.0)]}


def test_the_adapter_is_read_back_from_the_store_and_printed(run: dict[str, Any]) -> None:
    adapter = Path(run["res"].adapter.uri)
    (line,) = [s for s in run["said"] if s.startswith("adapter: ")]
    assert "read back from the store and verified" in line
    files = sorted(p for p in adapter.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"adapter_model.safetensors", "adapter_config.json",
                                       "README.md", "adapter.json"}  # fmt: skip
    for p in files:  # every file, with its size and sha256 as the store holds it
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        assert re.search(
            rf"^  {re.escape(p.name)} +{p.stat().st_size:,} bytes  sha256 {digest}$", line, re.M
        ), (p.name, line)


class _CorruptingStore(LocalStore):
    """A store that silently damages one file on the way in (the sender's hash is right)."""

    def put_file(self, local: str | Path, key: str) -> str:
        digest = super().put_file(local, key)
        if key.endswith("adapter_model.safetensors"):
            path = self._path(key)
            path.write_bytes(b"\xff" + path.read_bytes()[1:])
        return digest


def test_an_adapter_that_reads_back_differently_is_never_committed(tmp_path: Path) -> None:
    local = tmp_path / "adapter"
    local.mkdir()
    (local / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 8)
    (local / "adapter_config.json").write_text('{"r": 8}')
    files = {p.name: p.stat().st_size for p in local.iterdir()}

    good = LocalStore(tmp_path / "good")
    saved = upload_adapter(good, local, files)
    want = sorted(
        (n, s, hashlib.sha256((local / n).read_bytes()).hexdigest()) for n, s in files.items()
    )
    assert [r for r in saved.stored if r[0] != "adapter.json"] == want
    assert sorted(saved.stored) == read_back(good, "adapter/")

    bad = _CorruptingStore(tmp_path / "bad")
    with pytest.raises(RetryableError, match=r"did not verify: adapter_model\.safetensors: sent"):
        upload_adapter(bad, local, files)
    assert not bad.exists("adapter/adapter.json")  # uncommitted: cleanup removes the rest
