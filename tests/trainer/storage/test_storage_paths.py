"""Path containment: keys, manifest names, namespace/name and output roots from outside
input never place a file outside their root (issue 18). S3 cases run against a real moto
server; each case asserts that nothing new appeared anywhere around the destination."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.loader import parse_job
from kubetune_trainer.storage import fetch, open_store
from kubetune_trainer.storage.checkpoints import CheckpointRef, CheckpointStore
from kubetune_trainer.storage.paths import (
    UnsafePathError,
    run_location,
    safe_join,
)
from tests.support.servers.plugin import S3_BUCKET
from tests.support.servers.servers import S3Server

REPO = Path(__file__).resolve().parents[3]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "part",
    ["..", "a/../../x", "a/..", "/etc/passwd", "a\\..\\b", "a\x00b", "", "a//b", "./a", "a/./b"],
)
def test_safe_join_refuses_unsafe_parts(tmp_path: Path, part: str) -> None:
    with pytest.raises(UnsafePathError, match="refusing object key"):
        safe_join(tmp_path, part, what="object key")


def test_safe_join_keeps_plain_names_and_refuses_symlink_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert safe_join(root, "sub/w.bin") == (root / "sub" / "w.bin").resolve()
    (root / "link").symlink_to(tmp_path)  # a link planted in the folder points outside
    with pytest.raises(UnsafePathError, match="outside"):
        safe_join(root, "link/x.bin")


@pytest.mark.parametrize(
    ("namespace", "name"), [("../../x", "job"), ("ns", ".."), ("a/b", "job"), ("ns", "j\n/..")]
)
def test_run_location_refuses_path_like_namespace_and_name(
    tmp_path: Path, namespace: str, name: str
) -> None:
    with pytest.raises(UnsafePathError, match=r"metadata\.(namespace|name)"):
        run_location(str(tmp_path), namespace, name)
    with pytest.raises(UnsafePathError):
        run_location(f"s3://{S3_BUCKET}/runs", namespace, name)  # one rule for both stores
    assert run_location(str(tmp_path), "ns", "job") == f"{tmp_path}/ns/job"


@pytest.mark.parametrize("root", ["/", "file:///", "/..", "//"])
def test_filesystem_root_is_no_output_root(root: str) -> None:
    with pytest.raises(UnsafePathError, match="filesystem root"):
        run_location(root, "ns", "job")
    from kubetune_trainer.registry import open_registry

    with pytest.raises(UnsafePathError, match="filesystem root"):
        open_registry(root)


# -- against the real S3 server -------------------------------------------------------------
@pytest.mark.services
def test_dotdot_key_under_a_base_model_prefix_writes_nothing(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader's own fetch of an s3:// base (into the model cache) refuses the key."""
    from kubetune_trainer.modeling.loader import resolve_base

    box = tmp_path / "box"
    (box / "cache").mkdir(parents=True)
    monkeypatch.setenv("KUBETUNE_CACHE", str(box / "cache"))
    s3 = s3_server.client()
    s3.put_object(Bucket=S3_BUCKET, Key="models/base/config.json", Body=b"{}")
    evil = "models/base/../../../evil.txt"
    s3.put_object(Bucket=S3_BUCKET, Key=evil, Body=b"owned")
    job = _job(tmp_path, model={"base": f"s3://{S3_BUCKET}/models/base"})
    with pytest.raises(UnsafePathError, match=r"'\.\.' segment") as err:
        resolve_base(job.spec)
    assert evil in str(err.value)  # names the key
    assert files_under(box) == set(), "nothing written, inside or outside the destination"


@pytest.mark.services
def test_dotdot_key_under_a_dataset_prefix_writes_nothing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    from kubetune_trainer.data import prepare

    box = tmp_path / "box"
    cache = box / "a" / "cache"
    cache.mkdir(parents=True)
    s3 = s3_server.client()
    row = json.dumps({"question": "q?", "answer": "a"}) + "\n"
    s3.put_object(Bucket=S3_BUCKET, Key="data/ds/train.jsonl", Body=row.encode())
    evil = "data/ds/../../../../evil.jsonl"
    s3.put_object(Bucket=S3_BUCKET, Key=evil, Body=row.encode())
    job = _job(tmp_path, dataset={"source": f"s3://{S3_BUCKET}/data/ds", "format": "qa"})
    with pytest.raises(UnsafePathError, match="refusing object key") as err:
        prepare(job, cache_dir=str(cache))
    assert evil in str(err.value)
    assert files_under(box) == set()


@pytest.mark.services
def test_absolute_and_backslash_keys_are_refused_by_fetch(
    s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=S3_BUCKET, Key="m/ok.bin", Body=b"1")
    s3.put_object(Bucket=S3_BUCKET, Key="m//tmp/abs.bin", Body=b"2")  # rel "/tmp/abs.bin"
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UnsafePathError, match=r"absolute|empty"):
        fetch(f"s3://{S3_BUCKET}/m", dest)
    s3.delete_object(Bucket=S3_BUCKET, Key="m//tmp/abs.bin")
    s3.put_object(Bucket=S3_BUCKET, Key="m/a\\..\\..\\x.bin", Body=b"3")
    with pytest.raises(UnsafePathError, match="backslash"):
        fetch(f"s3://{S3_BUCKET}/m", dest)
    assert files_under(tmp_path / "box") == set()


@pytest.mark.services
def test_crafted_checkpoint_manifest_is_refused_before_writing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A committed-looking checkpoint whose MANIFEST.json names '../../..' files (with the
    objects really there, sizes and sha256 right): resume refuses it, writes nothing."""
    store = open_store(f"s3://{S3_BUCKET}/runs/ns/job")
    ckpts = CheckpointStore(store)
    good = tmp_path / "ckpt"
    good.mkdir()
    (good / "adapter_model.safetensors").write_bytes(os.urandom(64))
    ckpts.commit(good, 1)
    payload = b"#!/bin/sh\necho owned\n"
    rel = "../../../../evil.sh"
    s3 = s3_server.client()
    s3.put_object(Bucket=S3_BUCKET, Key=f"runs/ns/job/checkpoints/step-000002/{rel}", Body=payload)
    manifest = {
        "format": "kubetune-manifest/v1",
        "step": 2,
        "files": {rel: {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}},
    }
    s3.put_object(
        Bucket=S3_BUCKET,
        Key="runs/ns/job/checkpoints/step-000002/MANIFEST.json",
        Body=json.dumps(manifest).encode(),
    )
    assert [r.step for r in ckpts.list_committed()] == [1, 2]  # it passes the size checks
    box = tmp_path / "box"
    dest = box / "staging" / "resume-rank0"
    dest.parent.mkdir(parents=True)
    with pytest.raises(UnsafePathError, match=r"MANIFEST\.json") as err:
        ckpts.latest_verified(dest)
    assert rel in str(err.value) and "step-000002" in str(err.value)
    assert files_under(box) == set()
    assert files_under(tmp_path) == {"ckpt/adapter_model.safetensors"} | {
        f for f in files_under(tmp_path) if f.startswith("moto/")
    }


def test_crafted_local_manifest_is_refused(tmp_path: Path) -> None:
    """fetch's own guard, on a local store: a name that stays inside the run but leaves the
    checkpoint (the scan alone would call it torn: the listed file is not in the folder)."""
    run = tmp_path / "out" / "ns" / "job"
    store = open_store(str(run))
    store.put_bytes("report/report.json", b"{}")
    data = b"{}"
    manifest = {
        "format": "kubetune-manifest/v1",
        "files": {"../../report/report.json": {"size": 2, "sha256": _sha(data)}},
    }
    key = "checkpoints/step-000001"
    ref = CheckpointRef(1, "step-000001", key, store.uri(key), manifest)
    dest = tmp_path / "box" / "d"
    with pytest.raises(UnsafePathError, match=r"\.\./\.\./report"):
        CheckpointStore(store).fetch(ref, dest)
    assert files_under(tmp_path / "box") == set()


# -- the local output layout, end to end through the CLI --------------------------------------
def test_run_refuses_output_root_slash_before_any_work(tmp_path: Path) -> None:
    ns = f"kubetune-test-{uuid.uuid4().hex[:8]}"  # what a regression would create under /
    job = tmp_path / "job.yaml"
    job.write_text(_job_yaml(ns))
    try:
        out = _kubetune(tmp_path, "run", str(job), "--output", "/")
        assert out.returncode == 64, out.stderr
        assert "is the filesystem root" in out.stderr and "--output" in out.stderr
        assert "Traceback" not in out.stderr
        assert not Path("/", ns).exists()
    finally:
        shutil.rmtree(Path("/", ns), ignore_errors=True)


def test_run_with_a_traversing_namespace_writes_nothing_outside_the_output(
    tmp_path: Path, trainer_env: None
) -> None:
    """Even if a namespace like ../../x got past the spec checks, the run refuses it."""
    from kubetune_trainer.engine.main import execute

    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    job = _job(tmp_path)
    job.metadata.namespace = "../../x"  # as if it had reached the trainer
    code, result = execute(job, output=str(out), say=lambda _: None)
    assert code == 64 and result is None
    # Not even an empty folder: the run refused before opening its store.
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} == {
        "a",
        "a/b",
        "a/b/out",
        "termination-log",
    }
    assert "metadata.namespace" in (tmp_path / "termination-log").read_text()


# -- helpers ----------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _job(tmp_path: Path, **spec: Any) -> Any:
    base: dict[str, Any] = {
        "model": {"base": "builtin:tiny-llama"},
        "dataset": {"source": str(tmp_path / "none.jsonl"), "format": "qa"},
        "output": {"uri": str(tmp_path / "unused")},
    }
    for k, v in spec.items():
        base[k] = {**base.get(k, {}), **v}
    return parse_job(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "t", "namespace": "test"},
            "spec": base,
        }
    )


def _job_yaml(namespace: str) -> str:
    return (
        "apiVersion: kubetune.io/v1alpha1\nkind: FineTuneJob\n"
        f"metadata: {{name: t, namespace: {namespace}}}\n"
        "spec:\n  model: {base: 'builtin:tiny-llama'}\n"
        "  dataset: {source: none.jsonl, format: qa}\n  output: {uri: ./runs}\n"
    )


def _kubetune(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'trainer-image'}",
        "KUBETUNE_CACHE": str(cwd / "cache"),
        "KUBETUNE_TERMINATION_LOG": str(cwd / "termination-log"),
    }
    env.pop("KUBETUNE_OUTPUT_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepare_default_folder_refuses_a_traversing_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from kubetune_trainer.commands.prepare import command

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "none.jsonl").write_text('{"question": "q?", "answer": "a"}\n')
    job = work / "job.yaml"
    job.write_text(_job_yaml("'../../x'"))
    monkeypatch.chdir(work)
    got = CliRunner().invoke(command, [str(job)])
    assert got.exit_code != 0 and "namespace" in got.output, got.output
    assert files_under(tmp_path) == {"a/b/none.jsonl", "a/b/job.yaml"}


def test_registry_names_are_one_plain_segment() -> None:
    from kubetune_trainer.errors import ConfigError
    from kubetune_trainer.registry import check_name

    for bad in ("..", "a/b", "a\n", "/abs", ".hidden"):
        with pytest.raises(ConfigError, match="not a registry name"):
            check_name(bad)
    assert check_name("my-adapter.v2") == "my-adapter.v2"
