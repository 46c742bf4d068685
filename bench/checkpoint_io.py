"""Checkpoint I/O: kubetune's CheckpointStore over a real S3 server vs a local disk copy.

    python bench/checkpoint_io.py [--quick] [--reps 3] [--mb 128]

A checkpoint-shaped folder (adapter + optimizer + scheduler/RNG/trainer state: one big
file, one mid-size, a few small ones; random bytes, so nothing compresses) is:

- copied with shutil.copytree to another folder and back (the disk-copy reference);
- committed with `CheckpointStore(LocalStore).commit` and restored with `.fetch`
  (kubetune on a local folder: same sha256 manifest work as on S3);
- uploaded/downloaded with plain boto3 (same TransferConfig, no manifest, no hashing):
  the ceiling this S3 server sets for any client;
- committed/fetched with `CheckpointStore(S3Store)` against moto_server on 127.0.0.1
  over HTTP, with kubetune's TransferConfig defaults and alternatives (chunk size,
  concurrency), to see whether tuning helps.

Training stall: what the training thread spends per checkpoint. Before, the commit ran in the
save callback (stall = the whole upload); now BackgroundCommitter.submit hard-links the
folder and returns (stall = link time + waiting for a previous commit still in flight).
Measured at 0.1, 1 and 4 GB (quick: 16 and 64 MB) against a local store, and at 0.1 and 1 GB
against S3, where the upload itself is slower; both sides side by side in one run.

Each repetition runs every variant in turn (interleaved); throughput = checkpoint bytes /
seconds, min/median reported. moto_server itself is a Python process on the same 2 cores,
so its CPU time is measured too (from /proc) to tell server cost from client cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import loadavg, say, stats

MB = 1 << 20


def make_checkpoint(folder: Path, total_mb: int) -> int:
    """Files shaped like a LoRA checkpoint of a bigger model: optimizer state dominates."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "optimizer.pt": 0.62,
        "adapter_model.safetensors": 0.31,
        "rng_state.pth": 0.04,
        "scheduler.pt": 0.01,
        "trainer_state.json": 0.01,
        "training_args.bin": 0.01,
    }
    total = 0
    for name, share in parts.items():
        n = max(1024, int(total_mb * MB * share))
        (folder / name).write_bytes(os.urandom(n))
        total += n
    return total


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


VARIANTS: dict[str, dict[str, int]] = {
    "s3-default": {},  # S3Store's own TransferConfig defaults
    "s3-8MB-x8": {
        "multipart_chunksize": 8 * MB,
        "multipart_threshold": 8 * MB,
        "max_concurrency": 8,
    },
    "s3-64MB-x2": {
        "multipart_chunksize": 64 * MB,
        "multipart_threshold": 64 * MB,
        "max_concurrency": 2,
    },
}


def run(quick: bool = False, reps: int | None = None, mb: int | None = None) -> dict[str, Any]:
    from kubetune_trainer.storage import LocalStore, S3Store
    from kubetune_trainer.storage.checkpoints import CheckpointStore

    reps = reps or (1 if quick else 3)
    mb = mb or (16 if quick else 128)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="kt-ckbench-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "ckpt"
        nbytes = make_checkpoint(src, mb)
        from tests.support.servers.s3 import s3_server

        with s3_server(tmp) as moto:
            import boto3

            boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket="bench")
            server_cpu: dict[str, list[float]] = {}

            def record(name: str, op: str, seconds: float) -> None:
                rows.setdefault(name, {}).setdefault(op, []).append(nbytes / seconds)

            for rep in range(reps):
                # disk copy reference
                dst = tmp / f"copy-{rep}"
                t0 = time.perf_counter()
                shutil.copytree(src, dst)
                os.sync()
                record("disk-copy", "save", time.perf_counter() - t0)
                back = tmp / f"copy-back-{rep}"
                t0 = time.perf_counter()
                shutil.copytree(dst, back)
                record("disk-copy", "restore", time.perf_counter() - t0)
                shutil.rmtree(dst)
                shutil.rmtree(back)
                # kubetune on a local folder
                local = CheckpointStore(LocalStore(tmp / f"store-{rep}"))
                _commit_fetch(local, src, tmp / "restore", rep, record, "kubetune-local")
                shutil.rmtree(tmp / f"store-{rep}")
                # Plain boto3, same files and TransferConfig, no manifest and no hashing:
                # the most this S3 server gives any client here.
                raw = S3Store(f"s3://bench/raw-{rep}", moto.endpoint)
                cpu0 = _cpu_seconds(moto.proc.pid)
                _raw_put_get(raw, src, tmp / "restore", record)
                server_cpu.setdefault("boto3-raw", []).append(_cpu_seconds(moto.proc.pid) - cpu0)
                raw.delete_prefix("")
                # kubetune on S3, transfer settings as shipped and alternatives
                for name, opts in VARIANTS.items():
                    store = S3Store(f"s3://bench/{name}-{rep}", moto.endpoint, **opts)
                    cpu0 = _cpu_seconds(moto.proc.pid)
                    _commit_fetch(CheckpointStore(store), src, tmp / "restore", rep, record, name)
                    server_cpu.setdefault(name, []).append(_cpu_seconds(moto.proc.pid) - cpu0)
                    store.delete_prefix("")
                say(
                    f"checkpoint rep {rep + 1}/{reps}: "
                    + ", ".join(
                        f"{k} {v['save'][-1] / MB:.0f}/{v['restore'][-1] / MB:.0f} MB/s"
                        for k, v in rows.items()
                    )
                )
            stalls = stall(quick, moto.endpoint, tmp)
    summary = {k: {op: stats(v) for op, v in ops.items()} for k, ops in rows.items()}
    disk = summary["disk-copy"]
    ratios = {
        k: {op: summary[k][op]["median"] / disk[op]["median"] for op in ("save", "restore")}
        for k in summary
    }
    raw = summary["boto3-raw"]
    vs_raw = {
        k: {op: summary[k][op]["median"] / raw[op]["median"] for op in ("save", "restore")}
        for k in summary
        if k.startswith("s3-")
    }
    return {
        "quick": quick,
        "bytes": nbytes,
        "vs_boto3_raw": vs_raw,
        "reps": reps,
        "mb_per_s": summary,
        "vs_disk_copy": ratios,
        "moto_cpu_seconds": {k: stats(v) for k, v in server_cpu.items()},
        "load": loadavg(),
        "target": 0.7,
        "stall": stalls,
        "stall_target_s_per_gb": 1.0,
        "vs_boto3_target": 0.9,
    }


STALL_MB = (100, 1024, 4096)
STALL_MB_QUICK = (16, 64)
STALL_S3_MAX_MB = 1024  # moto keeps objects in RAM: 4 GB there would measure swap, not S3


def stall(quick: bool, endpoint: str, tmp: Path) -> list[dict[str, Any]]:
    """Seconds the training thread is held per checkpoint: synchronous vs background."""
    from kubetune_trainer.storage import LocalStore, S3Store
    from kubetune_trainer.storage.checkpoints import CheckpointStore
    from kubetune_trainer.storage.committer import BackgroundCommitter

    out = []
    for mb in STALL_MB_QUICK if quick else STALL_MB:
        src = tmp / f"stall-{mb}" / "checkpoint-1"
        nbytes = make_checkpoint(src, mb)
        stores = {"local": lambda n: LocalStore(tmp / n)}
        if mb <= STALL_S3_MAX_MB:
            stores["s3"] = lambda n: S3Store(f"s3://bench/{n}", endpoint)
        for kind, make in stores.items():
            sync_store = make(f"sync-{kind}-{mb}")
            t0 = time.perf_counter()
            CheckpointStore(sync_store).commit(src, 1)  # the old path: all in the callback
            sync_s = time.perf_counter() - t0
            bg_store = make(f"bg-{kind}-{mb}")
            committer = BackgroundCommitter(CheckpointStore(bg_store), 2, src.parent)
            t0 = time.perf_counter()
            stall_s = committer.submit(src, 1, set())
            committer.wait()
            total_s = time.perf_counter() - t0
            for st in (sync_store, bg_store):
                st.delete_prefix("")
            gb = nbytes / 1e9
            out.append({"store": kind, "bytes": nbytes, "sync_stall_s": sync_s,
                        "background_stall_s": stall_s, "background_total_s": total_s,
                        "stall_s_per_gb": stall_s / gb})  # fmt: skip
            say(f"stall {kind} {mb} MB: synchronous {sync_s:.2f} s, background {stall_s:.3f} s")
        shutil.rmtree(src.parent)
    return out


def _raw_put_get(store: Any, src: Path, restore: Path, record: Any) -> None:
    files = sorted(p for p in src.iterdir() if p.is_file())
    t0 = time.perf_counter()
    for f in files:
        store.client.upload_file(
            str(f), store.bucket, f"{store.prefix}/{f.name}", Config=store.transfer
        )
    record("boto3-raw", "save", time.perf_counter() - t0)
    restore.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for f in files:
        key = f"{store.prefix}/{f.name}"
        store.client.download_file(store.bucket, key, str(restore / f.name), Config=store.transfer)
    record("boto3-raw", "restore", time.perf_counter() - t0)
    shutil.rmtree(restore)


def _commit_fetch(ckpts: Any, src: Path, restore: Path, rep: int, record: Any, name: str) -> None:
    t0 = time.perf_counter()
    ckpts.commit(src, 100 + rep)
    record(name, "save", time.perf_counter() - t0)
    ref = ckpts.latest()
    t0 = time.perf_counter()
    ckpts.fetch(ref, restore)
    record(name, "restore", time.perf_counter() - t0)
    shutil.rmtree(restore)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument("--mb", type=int)
    a = p.parse_args()
    res = run(a.quick, a.reps, a.mb)
    print(
        json.dumps({k: res[k] for k in ("mb_per_s", "vs_disk_copy", "moto_cpu_seconds")}, indent=1)
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
