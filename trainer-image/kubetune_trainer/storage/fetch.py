"""Bring a remote input (base model, dataset, adapter) to a local folder before use."""

from __future__ import annotations

import logging
from pathlib import Path

from kubetune_trainer.errors import ConfigError

from .base import IntegrityError, sha256_file
from .manifest import MANIFEST, parse_manifest, verify_dir
from .paths import check_name, safe_join
from .s3 import S3Store, parse_s3_uri

log = logging.getLogger(__name__)


def local_path(uri: str) -> Path:
    """A local path or file:// URI as a Path."""
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()


def fetch(uri: str, dest_dir: str | Path, endpoint_url: str | None = None) -> Path:
    """Download `uri` (one object, or every object under a prefix) into `dest_dir`.

    Returns the local file (single object: `dest_dir/<basename>`) or `dest_dir` (prefix).
    A local path or file:// URI is returned as is, nothing is copied. Every download is
    checked against the listed size; when the prefix holds a MANIFEST.json, every file is
    also checked against its sha256, and files already present and matching are skipped.
    `dest_dir` belongs to the prefix: files in it that the prefix no longer holds are removed.
    Every key and manifest name is checked to stay inside `dest_dir` before anything is
    written (UnsafePathError naming the key otherwise).
    """
    if not uri.startswith("s3://"):
        return local_path(uri)
    bucket, key = parse_s3_uri(uri)
    store = S3Store(f"s3://{bucket}", endpoint_url)
    dest = Path(dest_dir)
    if key and store.exists(key):
        target = safe_join(dest, key.rsplit("/", 1)[-1], what=f"object key {uri!r}")
        store.get_file(key, target)
        _check_size(target, store.sizes(key)[key], uri)
        return target
    listed = store.sizes(key + "/" if key else "")
    sizes = {k[len(key) + 1 :] if key else k: v for k, v in listed.items()}
    if not sizes:
        raise ConfigError(f"nothing found at {uri}: check the bucket, the prefix and the endpoint")
    # '/'-ending keys (and the prefix's own marker, rel "") are folder markers.
    sizes = {rel: size for rel, size in sizes.items() if rel and not rel.endswith("/")}
    for rel in sizes:  # all first: a bad key anywhere means nothing is written
        check_name(rel, f"object key {_full(uri, rel)!r} (under {uri})")
    manifest = None
    if MANIFEST in sizes:
        data = store.get_bytes(f"{key}/{MANIFEST}" if key else MANIFEST)
        try:
            manifest = parse_manifest(data, _full(uri, MANIFEST))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for name in manifest["files"]:
            check_name(name, f"file name in {_full(uri, MANIFEST)}")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MANIFEST).write_bytes(data)
    for rel, size in sorted(sizes.items()):
        if rel == MANIFEST:
            continue
        target = safe_join(dest, rel, what=f"object key {_full(uri, rel)!r}")
        known = manifest["files"].get(rel) if manifest else None
        if (
            known
            and target.is_file()
            and target.stat().st_size == size
            and sha256_file(target) == known["sha256"]
        ):
            continue  # already here from an earlier fetch
        expected = known["sha256"] if known else None
        try:  # with a manifest, checked while downloading
            store.get_file(f"{key}/{rel}" if key else rel, target, expected)
        except IntegrityError:
            raise ConfigError(
                f"{uri} does not match its {MANIFEST}: {rel}: sha256 differs from the manifest"
            ) from None
        _check_size(target, size, _full(uri, rel))
    _prune(dest, set(sizes), uri)
    if manifest:
        problems = verify_dir(dest, manifest, hashes=False)  # listed but absent, sizes
        if problems:
            raise ConfigError(f"{uri} does not match its {MANIFEST}: " + "; ".join(problems))
    log.info("fetched %d files from %s to %s", len(sizes), uri, dest)
    return dest


def _full(uri: str, rel: str) -> str:
    return f"{uri.rstrip('/')}/{rel}"


def _prune(dest: Path, keep: set[str], uri: str) -> None:
    """Drop files an earlier fetch left that the prefix no longer holds: a re-uploaded
    model with other shards must not load beside the old ones."""
    for path in sorted(dest.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel not in keep:
            log.info("removing %s: no longer under %s", path, uri)
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _check_size(path: Path, expected: int, uri: str) -> None:
    got = path.stat().st_size
    if got != expected:
        raise ConfigError(f"download of {uri} is {got} bytes, the store lists {expected}")
