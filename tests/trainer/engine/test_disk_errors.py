"""A full or read-only output volume (issue 18): exit 73 (ExitCode.STORAGE, permanent), one
line naming the path, what happened and the fix, no traceback; committed checkpoints intact
and the failed checkpoint's or adapter's partial files removed.

The volume is a real size-limited filesystem: a 16 MB tmpfs mounted by the test (root only,
as in CI); it is filled, or remounted read-only, from a Trainer callback at the moment that
matters, so the trainer's own write then fails with ENOSPC / EROFS from the kernel.
"""

from __future__ import annotations

import errno
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from kubetune_api.constants import ExitCode
from kubetune_trainer.engine.main import execute
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.builders import make_job, write_qa_jsonl


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    vol = tmp_path / "vol"
    vol.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(vol)],
        capture_output=True,
        text=True,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {got.stderr.strip()}")
    try:
        yield vol
    finally:
        if subprocess.run(["umount", str(vol)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(vol)], check=False)


def fill(vol: Path) -> None:
    """Write until the kernel says ENOSPC: the volume has no byte left (once the background
    commit in flight, if any, has finished: the fill comes after that checkpoint)."""
    for t in threading.enumerate():
        if t.name.startswith("kubetune-commit-"):
            t.join()
    chunk = b"\0" * (64 << 10)
    with open(vol / "filler", "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


class At(TrainerCallback):
    """Run `action` right after the engine committed the checkpoint of `step` (after=True:
    when training ends, before the evaluation and the adapter)."""

    def __init__(self, action: Any, step: int | None = None) -> None:
        self.action, self.step = action, step

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.step == state.global_step:
            self.action()
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.step is None:
            self.action()
        return control


def _run(tmp: Path, out: Path, callback: At) -> tuple[int, dict[str, Any]]:
    job = make_job(
        out,
        name="disk",
        dataset={"source": str(write_qa_jsonl(tmp / "d.jsonl", 24)), "packing": "none"},
        training={"maxSteps": 6, "saveSteps": 2, "keepLastCheckpoints": 5},
    )
    code, result = execute(job, say=lambda _: None, extra_callbacks=[callback])
    assert result is None
    return code, json.loads((tmp / "termination-log").read_text())


def _intact(run_dir: Path, tmp: Path) -> list[str]:
    """Names of the committed checkpoints, each fetched and verified byte for byte."""
    ckpts = CheckpointStore(open_store(str(run_dir)))
    for ref in ckpts.list_committed():
        ckpts.fetch(ref, tmp / "verify" / ref.name)  # raises if any sha256 differs
    return [r.name for r in ckpts.list_committed()]


def _leftovers(vol: Path) -> list[str]:
    return sorted(p.name for p in vol.rglob("*") if p.name.endswith(".tmp"))


def test_disk_full_while_checkpointing(
    tmp_path: Path, volume: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, summary = _run(tmp_path, volume, At(lambda: fill(volume), step=2))
    assert code == ExitCode.STORAGE == 73
    run_dir = volume / "test" / "disk"
    msg = summary["message"]
    assert msg.startswith(f"no space left writing {run_dir}/checkpoints/step-000004/"), msg
    assert "keepLastCheckpoints" in msg and "\n" not in msg
    assert summary["phase"] == "training" and summary["checkpoint"].endswith("step-000002")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "(exit code 73)" in err
    assert _intact(run_dir, tmp_path) == ["step-000002"]
    assert not (run_dir / "checkpoints" / "step-000004").exists()  # torn files removed
    assert _leftovers(volume) == []


def test_disk_full_while_saving_the_adapter(
    tmp_path: Path, volume: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, summary = _run(tmp_path, volume, At(lambda: fill(volume)))
    assert code == 73
    run_dir = volume / "test" / "disk"
    assert summary["message"].startswith(f"no space left writing {run_dir}/adapter/")
    assert summary["phase"] == "saving"
    assert "Traceback" not in capfd.readouterr().err
    assert _intact(run_dir, tmp_path) == ["step-000002", "step-000004", "step-000006"]
    assert not (run_dir / "adapter").exists()  # the partial adapter is gone
    assert _leftovers(volume) == []


def test_read_only_output_while_saving_the_adapter(
    tmp_path: Path, volume: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(volume)], check=True)

    code, summary = _run(tmp_path, volume, At(read_only))
    assert code == 73
    run_dir = volume / "test" / "disk"
    msg = summary["message"]
    assert msg.startswith(f"{run_dir}/adapter/") and "read-only filesystem" in msg, msg
    assert "Traceback" not in capfd.readouterr().err
    assert _intact(run_dir, tmp_path) == ["step-000002", "step-000004", "step-000006"]
    assert not (run_dir / "adapter").exists()


def test_staging_folder_full_while_checkpointing(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The Trainer first saves each checkpoint in the local staging folder (in a pod, the
    /cache emptyDir with its sizeLimit): full there, torch's own error becomes exit 73."""
    monkeypatch.setenv("KUBETUNE_CACHE", str(volume))
    out = tmp_path / "out"
    code, summary = _run(tmp_path, out, At(lambda: fill(volume), step=2))
    assert code == 73
    msg = summary["message"]
    assert msg.startswith(f"no space left writing the local staging folder {volume}/staging")
    assert "KUBETUNE_CACHE" in msg and "\n" not in msg
    assert "Traceback" not in capfd.readouterr().err
    assert _intact(out / "test" / "disk", tmp_path) == ["step-000002"]


def test_a_node_reports_73_over_a_lost_peer() -> None:
    """One rank's full disk is why its peers lost it: the node's code is 73, not 75."""
    from kubetune_trainer.distributed.exitcodes import node_exit_code

    assert node_exit_code([ExitCode.RETRYABLE, ExitCode.STORAGE]) == 73
    assert node_exit_code([ExitCode.STORAGE, ExitCode.INTERNAL, -9]) == 73
