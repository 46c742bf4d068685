"""MANIFEST.json: the list of a folder's files with size and sha256.

Written LAST when a checkpoint is committed, so its presence is the commit marker;
checked on resume and on fetch, so a torn or corrupted copy is never used.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .base import sha256_file
from .local import atomic_write_bytes
from .paths import UnsafePathError, safe_join

MANIFEST = "MANIFEST.json"
FORMAT = "kubetune-manifest/v1"


def folder_files(folder: str | Path) -> dict[str, Path]:
    """Every file under `folder` but the manifest, by '/'-separated relative name."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def build_manifest(folder: str | Path, step: int | None = None) -> dict[str, Any]:
    """Describe every file under `folder` (recursively, '/'-separated relative names)."""
    files = {
        name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for name, p in folder_files(folder).items()
    }
    return new_manifest(files, step)


def new_manifest(files: dict[str, dict[str, Any]], step: int | None = None) -> dict[str, Any]:
    """A manifest of `files` ({name: {size, sha256}})."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "files": files,
    }
    if step is not None:
        manifest["step"] = step
    return manifest


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse and shape-check a manifest; ValueError naming `where` when it is not one."""
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
            isinstance(v, dict)
            and isinstance(v.get("size"), int)
            and len(v.get("sha256", "")) == 64
            for v in files.values()
        ):
            raise ValueError("files must map names to {size, sha256}")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: not a valid {MANIFEST} ({e})") from e
    return manifest


def write_manifest(folder: str | Path, step: int | None = None) -> dict[str, Any]:
    """Write `folder`/MANIFEST.json describing the folder's files; returns the manifest."""
    manifest = build_manifest(folder, step)
    atomic_write_bytes(Path(folder) / MANIFEST, dump_manifest(manifest))
    return manifest


def verify_dir(
    folder: str | Path, manifest: dict[str, Any] | None = None, hashes: bool = True
) -> list[str]:
    """Problems found comparing `folder` with its manifest (empty list = intact).

    Uses `folder`/MANIFEST.json unless a manifest is given. Extra files not in the
    manifest are allowed (a caller may have added, say, a README next to the weights).
    `hashes=False` checks presence and sizes only (the bytes were verified on arrival).
    """
    root = Path(folder)
    if manifest is None:
        path = root / MANIFEST
        if not path.is_file():
            return [f"{root}: no {MANIFEST}"]
        try:
            manifest = parse_manifest(path.read_bytes(), str(path))
        except ValueError as e:
            return [str(e)]
    problems = []
    for name, meta in sorted(manifest["files"].items()):
        try:  # a crafted name must not make us read (or vouch for) a file elsewhere
            p = safe_join(root, name, what=f"file name in {MANIFEST}")
        except UnsafePathError as e:
            problems.append(str(e))
            continue
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != meta["size"]:
            problems.append(f"{name}: {p.stat().st_size} bytes, manifest says {meta['size']}")
        elif hashes and sha256_file(p) != meta["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems
