"""Background checkpoint commits: the training thread hands a folder over and goes on; the
manifest comes last; errors reach the training thread; the process never exits with a
commit half-done."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from kubetune_trainer.storage.committer import BackgroundCommitter
from kubetune_trainer.storage.local import LocalStore


class GatedStore(LocalStore):
    """A real local store whose file uploads wait until the test opens the gate."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.started = threading.Event()

    def put_file(self, local: str | Path, key: str) -> str:
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().put_file(local, key)


def make_folder(path: Path, files: dict[str, int]) -> Path:
    for name, size in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(os.urandom(size))
    return path


def test_submit_returns_while_the_upload_is_blocked_and_manifest_comes_last(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "store")
    ckpts = CheckpointStore(store)
    committer = BackgroundCommitter(ckpts, keep_last=2, pending_root=tmp_path / "staging")
    folder = make_folder(tmp_path / "staging" / "checkpoint-3", {"a.bin": 5000, "s/b.pt": 10})
    want = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.*")}

    committer.submit(folder, 3, protect={3})
    assert store.started.wait(30)
    # The Trainer rotates its own folder away while the upload still runs: the committer
    # uploads its hard-linked copy, not the Trainer's folder.
    shutil.rmtree(folder)
    assert committer.busy and ckpts.latest() is None  # nothing committed before every part
    assert committer.drain() == []

    store.gate.set()
    committer.wait()
    (done,) = committer.drain()
    assert done.step == 3 and done.uri.endswith("checkpoints/step-000003")
    got = ckpts.fetch(ckpts.latest(), tmp_path / "back")
    assert {k: (got / k).read_bytes() for k in want} == want
    assert not list((tmp_path / "staging").glob(".commit-*")), "pending copy left behind"


def test_second_submit_waits_for_the_first_then_retention_applies(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "store")
    ckpts = CheckpointStore(store)
    committer = BackgroundCommitter(ckpts, keep_last=1, pending_root=tmp_path / "staging")
    committer.submit(make_folder(tmp_path / "c1", {"a.bin": 100}), 1, protect={1})
    second = threading.Thread(
        target=committer.submit, args=(make_folder(tmp_path / "c2", {"a.bin": 100}), 2, {2})
    )
    second.start()
    second.join(0.5)
    assert second.is_alive(), "a second commit started while the first was in flight"
    store.gate.set()
    second.join(30)
    committer.wait()
    assert [c.step for c in committer.drain()] == [1, 2]
    assert [r.step for r in ckpts.list_committed()] == [2]  # keep_last=1


def test_a_failed_background_commit_is_raised_on_the_training_thread(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "checkpoints").write_text("a file where the checkpoint folder must go")
    ckpts = CheckpointStore(open_store(str(root)))
    committer = BackgroundCommitter(ckpts, keep_last=2, pending_root=tmp_path / "staging")
    committer.submit(make_folder(tmp_path / "c1", {"a.bin": 100}), 1, protect=set())
    with pytest.raises(OSError):
        committer.wait()
    committer.raise_failed()  # raised once, not again
    assert committer.drain() == []


PROGRAM = """
import sys, threading
from pathlib import Path
from kubetune_trainer.distributed.runtime import exit_rank
from kubetune_trainer.storage.checkpoints import CheckpointStore
from kubetune_trainer.storage.committer import BackgroundCommitter
from kubetune_trainer.storage.local import LocalStore

class Slow(LocalStore):
    def put_file(self, local, key):
        threading.Event().wait(1.0)  # the training thread dies while this runs
        return super().put_file(local, key)

tmp = Path(sys.argv[1])
(tmp / "c5").mkdir()
(tmp / "c5" / "adapter.bin").write_bytes(b"x" * 1000)
c = BackgroundCommitter(CheckpointStore(Slow(tmp / "store")), 2, tmp / "staging")
c.submit(tmp / "c5", 5, set())
if sys.argv[2] == "exit_rank":  # a rank of a multi-process run leaves through os._exit
    exit_rank(75)
try:  # as run_job does: its finally settles the commit in flight before the run ends
    raise RuntimeError("training crashed right after handing the checkpoint over")
finally:
    c.wait()
"""


@pytest.mark.parametrize("how", ["crash", "exit_rank"])
def test_the_process_does_not_exit_before_the_in_flight_commit(tmp_path: Path, how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WORLD_SIZE": "2"}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path), how],
        env=env,
        capture_output=True,
        timeout=120,
    )
    if how == "crash":
        assert done.returncode == 1 and b"training crashed" in done.stderr
    else:
        assert done.returncode == 75, done.stderr
    latest = CheckpointStore(open_store(str(tmp_path / "store"))).latest()
    assert latest is not None and latest.step == 5
