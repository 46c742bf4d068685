"""A fresh start moves earlier checkpoints aside (never deletes them): on a local folder and
on the real S3 server, committed checkpoints arrive committed and verify byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.checkpoints import CheckpointStore
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server


def _set_aside_keeps_everything(root: str, tmp_path: Path) -> None:
    store = open_store(root)
    ckpts = CheckpointStore(store)
    for step in (2, 4):
        folder = tmp_path / f"c{step}"
        (folder / "sub").mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(os.urandom(1000 + step))
        (folder / "sub" / "rng.pth").write_bytes(os.urandom(10))
        ckpts.commit(folder, step)
    before = {r.name: r.manifest["files"] for r in ckpts.list_committed()}
    moved = ckpts.set_aside("superseded/uid-a/checkpoints")
    assert [u.rsplit("/", 1)[-1] for u in moved] == ["step-000002", "step-000004"]
    assert ckpts.latest() is None and store.list("checkpoints/") == []
    kept = CheckpointStore(store, "superseded/uid-a/checkpoints")
    assert {r.name: r.manifest["files"] for r in kept.list_committed()} == before
    for ref in kept.list_committed():
        assert kept.fetch(ref, tmp_path / "verify" / ref.name).is_dir()  # every sha256


def test_set_aside_on_a_local_folder(tmp_path: Path) -> None:
    _set_aside_keeps_everything(str(tmp_path / "run"), tmp_path)


@pytest.mark.services
def test_set_aside_on_s3_copies_on_the_server(s3_server: S3Server, tmp_path: Path) -> None:
    _set_aside_keeps_everything(f"s3://{S3_BUCKET}/runs/ns/job", tmp_path)
