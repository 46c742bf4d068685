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
from typing import BinaryIO

from kubetune_trainer.errors import TrainerError

_CHUNK = 1 << 20


class StorageError(TrainerError):
    """A storage operation failed for a reason that is not transient (a bug or bad state)."""


class IntegrityError(StorageError):
    """Downloaded bytes do not have the expected sha256; nothing was written at the target."""


class HashingReader:
    """A seekable binary file whose bytes are hashed as they are first read, in order.

    Transfer libraries may re-read a region (retries, checksum passes): only the bytes at
    the frontier extend the hash, so `digest()` is the file's sha256 once every byte was
    read at least once, and None if something skipped ahead (then hash the file again).
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f, self.size = f, size
        self._h, self._frontier = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        pos = self._f.tell()
        data = self._f.read(n)
        end = pos + len(data)
        if pos <= self._frontier < end:
            self._h.update(memoryview(data)[self._frontier - pos :])
            self._frontier = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        """The owner of the file closes it (s3transfer calls this when a part is sent)."""

    def digest(self) -> str | None:
        return self._h.hexdigest() if self._frontier == self.size else None


class HashingWriter:
    """A forward-only writer that hashes what passes through (non-seekable on purpose:
    boto3 then delivers a concurrent download's parts in order)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self._h = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._h.update(data)
        return self._f.write(data)

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def check_sha256(got: str, expected: str | None, what: str) -> None:
    if expected is not None and got != expected:
        raise IntegrityError(f"{what}: sha256 differs from the manifest")


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
    def put_file(self, local: str | Path, key: str) -> str:
        """Store a file; returns the sha256 of the bytes stored (hashed while sending)."""

    @abstractmethod
    def get_file(self, key: str, local: str | Path, sha256: str | None = None) -> Path:
        """Download to `local`. With `sha256`, the bytes are checked while they arrive and a
        mismatch raises IntegrityError without touching `local`."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def create_bytes(self, key: str, data: bytes) -> bool:
        """Store `data` only if `key` does not exist yet (atomically); False if it did."""

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

    def copy(self, src: str, dest: str) -> None:
        """Copy one object to another key of this store (through a local temp file; S3
        copies on the server)."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kubetune-copy-") as tmp:
            local = Path(tmp) / "object"
            self.get_file(src, local)
            self.put_file(local, dest)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self.sizes(prefix))

    def exists(self, key: str) -> bool:
        return key in self.sizes(key)

    def uri(self, key: str = "") -> str:
        """The full URI of a key (for logs, status and MLflow)."""
        return self.root_uri.rstrip("/") + ("/" + key.strip("/") if key.strip("/") else "")
