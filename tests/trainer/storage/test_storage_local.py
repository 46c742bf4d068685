"""The local-folder store and checkpoints on it: atomic writes, commit marker, retention."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import pytest

from kubetune_trainer.storage import (
    MANIFEST,
    LocalStore,
    delete_run,
    fetch,
    open_store,
    verify_dir,
    write_manifest,
)
from kubetune_trainer.storage.base import HashingReader, IntegrityError
from kubetune_trainer.storage.checkpoints import CheckpointStore


def make_ckpt(folder: Path, step: int, size: int = 1000) -> Path:
    """A checkpoint-shaped folder whose bytes depend on the step."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(bytes([step % 256]) * size)
    (folder / "optimizer.pt").write_bytes(b"opt" * (size // 3 + step))
    (folder / "rng").mkdir(exist_ok=True)
    (folder / "rng" / "rank0.pth").write_bytes(f"rng-{step}".encode())
    return folder


def test_open_store_local_forms_and_roundtrip(tmp_path: Path) -> None:
    for uri in (str(tmp_path / "a"), f"file://{tmp_path / 'a'}"):
        store = open_store(uri)
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / "a"
    store = open_store(str(tmp_path / "run"))
    store.check_writable()
    store.put_bytes("report/report.json", b'{"ok": true}')
    src = tmp_path / "w.bin"
    src.write_bytes(b"x" * 5000)
    assert store.put_file(src, "adapter/w.bin") == hashlib.sha256(b"x" * 5000).hexdigest()
    assert store.get_bytes("report/report.json") == b'{"ok": true}'
    assert store.get_file("adapter/w.bin", tmp_path / "back" / "w.bin").read_bytes() == b"x" * 5000
    with pytest.raises(IntegrityError):  # verified in the copy, before the rename
        store.get_file("adapter/w.bin", tmp_path / "bad" / "w.bin", "0" * 64)
    assert not (tmp_path / "bad" / "w.bin").exists()
    assert store.list() == ["adapter/w.bin", "report/report.json"]
    assert store.sizes("adapter/") == {"adapter/w.bin": 5000}
    store.put_bytes("adapter2/x", b"1")
    assert store.list("adapter/") == ["adapter/w.bin"], "a folder prefix must not match adapter2/"
    assert store.list("adapter") == ["adapter/w.bin", "adapter2/x"]
    store.delete_prefix("adapter2/")
    assert store.exists("adapter/w.bin") and not store.exists("adapter/nope")
    # No temp files left next to the objects by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file()) == [
        "report.json",
        "w.bin",
    ]
    with pytest.raises(FileNotFoundError):
        store.get_bytes("nope")
    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes("../outside", b"1")
    assert store.delete_prefix("adapter/") == 1
    assert store.list() == ["report/report.json"]
    assert not (tmp_path / "run" / "adapter").exists()


def test_create_bytes_writes_only_a_new_key(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    assert store.create_bytes("registry/a/v1.json", b"first") is True
    assert store.create_bytes("registry/a/v1.json", b"second") is False
    assert store.get_bytes("registry/a/v1.json") == b"first"
    assert store.list("registry/") == ["registry/a/v1.json"]  # no temp file left behind


def test_unwritable_local_output_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from kubetune_trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="not writable"):
        open_store(str(blocker / "run")).check_writable()


def test_hashing_reader_hashes_each_byte_once_in_order() -> None:
    """Transfer libraries rewind and re-read (retries, checksums): the hash must not care."""
    data = os.urandom(10_000)
    f = io.BytesIO(data)
    r = HashingReader(f, len(data))
    r.read(4000)
    r.seek(1000)
    r.read(5000)  # re-reads 1000..4000, then extends to 6000
    r.seek(0)
    r.read(100)
    r.seek(6000)
    r.read()
    assert r.digest() == hashlib.sha256(data).hexdigest()
    skipped = HashingReader(io.BytesIO(data), len(data))
    skipped.seek(5000)
    skipped.read()
    assert skipped.digest() is None  # not every byte was seen in order: caller re-hashes


def test_manifest_detects_missing_short_and_corrupted_files(tmp_path: Path) -> None:
    folder = make_ckpt(tmp_path / "c", 3)
    manifest = write_manifest(folder, step=3)
    assert manifest["step"] == 3 and set(manifest["files"]) == {
        "adapter_model.safetensors",
        "optimizer.pt",
        "rng/rank0.pth",
    }
    assert verify_dir(folder) == []
    (folder / "rng" / "rank0.pth").write_bytes(b"rng-4")  # same size, other bytes
    (folder / "optimizer.pt").write_bytes(b"short")
    (folder / "adapter_model.safetensors").unlink()
    problems = verify_dir(folder)
    assert problems == [
        "adapter_model.safetensors: missing",
        f"optimizer.pt: 5 bytes, manifest says {manifest['files']['optimizer.pt']['size']}",
        "rng/rank0.pth: sha256 differs from the manifest",
    ]
    (folder / MANIFEST).unlink()
    assert verify_dir(folder) == [f"{folder}: no {MANIFEST}"]


def test_checkpoints_commit_latest_retain_local(tmp_path: Path, caplog) -> None:
    ckpts = CheckpointStore(open_store(str(tmp_path / "out")))
    assert ckpts.latest() is None
    for step in (10, 20, 30):
        uri = ckpts.commit(make_ckpt(tmp_path / f"l{step}", step), step)
        assert uri == str(tmp_path / "out" / "checkpoints" / f"step-{step:06d}")
    # A commit interrupted after the first file: files present, no manifest.
    torn_dir = tmp_path / "out" / "checkpoints" / "step-000040"
    torn_dir.mkdir()
    (torn_dir / "adapter_model.safetensors").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING):
        latest = ckpts.latest()
    assert latest is not None and latest.step == 30
    assert "step-000040" in caplog.text and "no MANIFEST.json" in caplog.text
    assert [t.name for t in ckpts.list_torn()] == ["step-000040"]

    got = ckpts.fetch(latest, tmp_path / "resume")
    assert (got / "adapter_model.safetensors").read_bytes() == bytes([30]) * 1000
    assert verify_dir(got) == []

    deleted = ckpts.retain(keep_last=1, protect={10})
    assert deleted == [str(tmp_path / "out" / "checkpoints" / "step-000020")]
    assert [r.step for r in ckpts.list_committed()] == [10, 30]
    assert torn_dir.exists(), "retain must never delete an uncommitted checkpoint"


def test_manifest_of_the_commit_lists_sizes_and_sha256(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    CheckpointStore(store).commit(make_ckpt(tmp_path / "c", 7), 7)
    manifest = json.loads(store.get_bytes("checkpoints/step-000007/MANIFEST.json"))
    assert manifest["step"] == 7 and manifest["created_at"].endswith("Z")
    assert manifest["files"]["adapter_model.safetensors"]["size"] == 1000
    assert len(manifest["files"]["optimizer.pt"]["sha256"]) == 64


def test_fetch_local_and_delete_run_local(tmp_path: Path) -> None:
    assert fetch(str(tmp_path / "model"), tmp_path / "unused") == tmp_path / "model"
    assert fetch(f"file://{tmp_path}/model", tmp_path / "unused") == tmp_path / "model"
    run = tmp_path / "runs" / "ns" / "job"
    make_ckpt(run / "checkpoints" / "step-000001", 1)
    assert delete_run(str(run)) == 3
    assert not run.exists() and (tmp_path / "runs" / "ns").exists()
    assert delete_run(str(run)) == 0
