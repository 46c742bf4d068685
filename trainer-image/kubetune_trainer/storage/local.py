"""A local folder as a Store: every write is tmp file + fsync + rename (atomic on POSIX)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kubetune_trainer.errors import WRITE_ERRNOS, ConfigError, write_error

from .base import HashingWriter, Store, check_sha256


def _atomic_write(dest: Path, write: Callable[[BinaryIO], object], replace: bool = True) -> bool:
    """Write through a temp file, then rename; with replace=False link instead, and return
    False (writing nothing) when `dest` already exists."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The temp file lives in the destination folder: the rename never crosses filesystems.
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, dest) from exc
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, dest)
            return True
        try:
            os.link(tmp, dest)  # atomic create-if-absent: fails if dest exists
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)  # never a torn file at or beside `dest`
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_error(exc, dest) from exc
        raise


def atomic_copy(src: str | Path, dest: str | Path, sha256: str | None = None) -> str:
    """Copy through a temp file; returns the sha256 of the bytes copied (one pass).

    With `sha256`, a mismatch raises IntegrityError before the rename: `dest` is untouched."""
    dest = Path(dest)
    digest = ""

    def copy(f: BinaryIO) -> None:
        nonlocal digest
        out = HashingWriter(f)
        with open(src, "rb") as s:
            shutil.copyfileobj(s, out, 1 << 20)
        digest = out.hexdigest()
        check_sha256(digest, sha256, str(src))

    _atomic_write(dest, copy)
    return digest


def atomic_write_bytes(dest: str | Path, data: bytes) -> Path:
    dest = Path(dest)
    _atomic_write(dest, lambda f: f.write(data))
    return dest


class LocalStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.root_uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key.strip("/")).resolve()
        # Keys come from our own code, but a '..' would silently write outside the run.
        if path != self.root.resolve() and self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return path

    def put_file(self, local: str | Path, key: str) -> str:
        return atomic_copy(local, self._path(key))

    def get_file(self, key: str, local: str | Path, sha256: str | None = None) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        atomic_copy(src, local, sha256)
        return Path(local)

    def put_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        return _atomic_write(self._path(key), lambda f: f.write(data), replace=False)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        return path.read_bytes()

    def sizes(self, prefix: str = "") -> dict[str, int]:
        # S3 semantics: "adapter" matches adapter/x and adapter2/y; "adapter/" only the folder.
        want = prefix.lstrip("/")
        base = self._path(want) if want.strip("/") else self.root
        walk_from = base if (want.endswith("/") or not want) else base.parent
        out: dict[str, int] = {}
        if not walk_from.is_dir():
            return out
        for path in walk_from.rglob("*"):
            # Temp files of writes in progress are not objects yet.
            if not path.is_file() or (path.name.endswith(".tmp") and path.name.startswith(".")):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(want):
                out[key] = path.stat().st_size
        return out

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def copy(self, src: str, dest: str) -> None:
        atomic_copy(self._path(src), self._path(dest))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.sizes(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        # Remove the folders left empty, deepest first, never the root itself; a folder
        # prefix also loses its empty subfolders (a write that failed before its first file).
        dirs = {self._path(k).parent for k in keys}
        folder = self._path(prefix) if prefix.endswith("/") and prefix.strip("/") else None
        if folder is not None and folder.is_dir():
            dirs |= {d for d in folder.rglob("*") if d.is_dir()} | {folder}
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            while d != self.root and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
                d = d.parent
        return len(keys)

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".kubetune-write-probe-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise write_error(e, self.root, "output folder preflight") from e
            raise ConfigError(
                f"output folder {self.root} is not writable ({e.strerror}); "
                "fix its permissions or point output.uri elsewhere"
            ) from e
