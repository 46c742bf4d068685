"""A failure mid-training: the documented exit code, partial artifacts removed, committed
checkpoints kept, and the one-line summary the operator reads from the termination log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from kubetune_api.constants import ExitCode
from kubetune_api.termination import TerminationSummary
from kubetune_trainer.engine.main import _cleanup_partial, execute
from kubetune_trainer.engine.progress import Progress
from kubetune_trainer.modeling.cache import cache_root
from kubetune_trainer.storage import LocalStore, open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.builders import make_job, prepared


class FailAt(TrainerCallback):
    """At `step`, leave a checkpoint upload without its manifest in the store (what a crash
    during a commit leaves), then fail the way the real thing fails."""

    def __init__(self, step: int, error: BaseException, run_dir: Path) -> None:
        self.step, self.error, self.run_dir = step, error, run_dir

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if state.global_step == self.step:
            torn = self.run_dir / "checkpoints" / f"step-{self.step + 1:06d}"
            torn.mkdir(parents=True)
            (torn / "adapter_model.safetensors").write_bytes(b"half an upload")
            raise self.error
        return control


def _summary(tmp: Path) -> dict[str, Any]:
    # Strict: the line the trainer wrote is exactly the contract's model (no unknown key).
    line = (tmp / "termination-log").read_text()
    return TerminationSummary.model_validate_json(line).model_dump(exclude_none=True)


def test_oom_then_a_transient_error_exit_66_then_75_and_leave_only_committed_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = make_job(
        tmp_path / "out", name="fail",
        training={"maxSteps": 12, "saveSteps": 5, "keepLastCheckpoints": 2},
    )  # fmt: skip
    run_dir = tmp_path / "out" / "test" / "fail"
    ckpts = CheckpointStore(open_store(str(run_dir)))
    staging = cache_root() / "staging"
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    code, res = execute(job, prepared=prepared(), say=lambda s: None,
                        extra_callbacks=[FailAt(7, oom, run_dir)])  # fmt: skip
    assert (code, res) == (ExitCode.OOM, None) and code == 66
    assert [r.name for r in ckpts.list_committed()] == ["step-000005"]
    assert not (run_dir / "checkpoints" / "step-000008").exists()  # the torn upload is gone
    assert not (run_dir / "adapter").exists()
    assert not list(staging.glob("fail-*"))  # the local staging folder too
    summary = _summary(tmp_path)
    assert summary["exit_code"] == 66 and summary["phase"] == "training"
    assert summary["step"] == 7 and summary["checkpoint"] == str(
        run_dir / "checkpoints/step-000005"
    )
    assert summary["message"].startswith("ran out of memory while training (CUDA out of memory")
    assert "training.microBatchSize" in summary["message"]  # what to change
    err = capsys.readouterr().err
    assert (
        "kubetune: training failed at step 7: ran out of memory" in err and "(exit code 66)" in err
    )

    # The retry resumes from step 5 and loses its peer at step 9: retryable, work kept.
    lost = ConnectionError("connection to the object store reset by peer")
    code, res = execute(job, prepared=prepared(), say=lambda s: None,
                        extra_callbacks=[FailAt(9, lost, run_dir)])  # fmt: skip
    assert (code, res) == (ExitCode.RETRYABLE, None) and code == 75
    assert [r.name for r in ckpts.list_committed()] == ["step-000005"]
    assert ckpts.fetch(ckpts.list_committed()[0], tmp_path / "verify").is_dir()  # intact
    assert not (run_dir / "checkpoints" / "step-000010").exists()
    assert not list(staging.glob("fail-*"))
    summary = _summary(tmp_path)
    assert summary["exit_code"] == 75 and summary["phase"] == "training"
    assert summary["step"] == 9 and summary["checkpoint"] == str(
        run_dir / "checkpoints/step-000005"
    )
    assert summary["message"] == (
        "transient failure: ConnectionError: connection to the object store reset by peer"
    )
    assert "(exit code 75)" in capsys.readouterr().err

    code, res = execute(job, prepared=prepared(), say=lambda s: None)  # and then it finishes
    assert code == 0 and res is not None and res.resumed_from.endswith("step-000005")
    assert res.steps == 12 and _summary(tmp_path)["exit_code"] == 0


def test_cleanup_after_a_failed_save_drops_the_uncommitted_adapter_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_model.safetensors").write_bytes(b"weights")
    CheckpointStore(store).commit(ckpt, 5)
    store.put_bytes("checkpoints/step-000003/optimizer.pt", b"older torn: maybe a live retain")
    store.put_bytes("checkpoints/step-000006/optimizer.pt", b"newer torn")
    store.put_bytes("adapter/adapter_model.safetensors", b"uploaded, no adapter.json")

    _cleanup_partial(Progress(phase="saving", store=store))
    assert sorted(store.list()) == [
        "checkpoints/step-000003/optimizer.pt",
        "checkpoints/step-000005/MANIFEST.json",
        "checkpoints/step-000005/adapter_model.safetensors",
    ]

    store.put_bytes("adapter/adapter_model.safetensors", b"weights")
    store.put_bytes("adapter/adapter.json", b"{}")  # committed: a later failure keeps it
    _cleanup_partial(Progress(phase="saving", store=store))
    assert store.exists("adapter/adapter.json") and store.exists(
        "adapter/adapter_model.safetensors"
    )
