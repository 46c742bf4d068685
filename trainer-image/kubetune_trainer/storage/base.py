"""The small interface every storage backend implements (local folder or S3).

Keys are '/'-separated paths relative to the store root (`<output>/<namespace>/<name>`
for a run). Backends write whole objects: a reader sees either the old object or the
new one, never half of it (local: tmp + rename; S3: PUT/multipart complete is atomic).
Atomicity of a *set* of files (a checkpoint) is the manifest's job, see checkpoints.py.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

from kubetune_trainer.errors import TrainerError

_CHUNK = 1 << 20


class StorageError(TrainerError):
    """A storage operation failed for a reason that is not transient (a bug or bad state)."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and stray slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class Store(ABC):
    """Objects under one root. Every method takes keys relative to that root."""

    root_uri: str

    @abstractmethod
    def put_file(self, local: str | Path, key: str) -> None: ...

    @abstractmethod
    def get_file(self, key: str, local: str | Path) -> Path: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's content; FileNotFoundError when it does not exist."""

    @abstractmethod
    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key under `prefix` (a folder-like prefix or '') mapped to its size in bytes."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many were deleted."""

    @abstractmethod
    def check_writable(self) -> None:
        """Preflight before training: raise ConfigError naming the location and the fix."""

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self.sizes(prefix))

    def exists(self, key: str) -> bool:
        return key in self.sizes(key)

    def uri(self, key: str = "") -> str:
        """The full URI of a key (for logs, status and MLflow)."""
        return self.root_uri.rstrip("/") + ("/" + key.strip("/") if key.strip("/") else "")
