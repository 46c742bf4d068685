"""Where a run's artifacts live: a local folder or S3, through one small interface.

    store = open_store("s3://bucket/runs/team-a/my-job")   # or a path, or file://...
    store.check_writable()                                   # preflight, before training
    ckpts = CheckpointStore(store)                           # storage.checkpoints
    ckpts.commit("/tmp/ckpt", step=100)                      # atomic: MANIFEST.json last
    fetch("s3://bucket/models/base", "/tmp/base")            # inputs to a local folder

Imports no torch, so the operator-side tools and tests stay light.
"""

from __future__ import annotations

from kubetune_api.uris import is_remote

from .base import StorageError, Store, sha256_file
from .cleanup import delete_run, delete_s3_prefix
from .fetch import fetch, local_path
from .local import LocalStore
from .manifest import MANIFEST, verify_dir, write_manifest
from .s3 import S3Store

__all__ = [
    "MANIFEST",
    "LocalStore",
    "S3Store",
    "StorageError",
    "Store",
    "delete_run",
    "delete_s3_prefix",
    "fetch",
    "open_store",
    "sha256_file",
    "verify_dir",
    "write_manifest",
]


def open_store(uri: str, endpoint_url: str | None = None, **s3_options: object) -> Store:
    """A Store rooted at `uri`: s3://bucket/prefix, file:///path or a plain path.

    `endpoint_url` (spec.output.s3Endpoint) wins over AWS_ENDPOINT_URL; `s3_options` go to
    S3Store (multipart sizes, concurrency, retry counts).
    """
    if is_remote(uri):
        return S3Store(uri, endpoint_url, **s3_options)  # type: ignore[arg-type]
    return LocalStore(local_path(uri))
