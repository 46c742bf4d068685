"""A stable identity for prepared data: sha256 over canonical JSON of the records.

Each split is hashed on its own (`SplitHash`, fed one record at a time, so data written
as a stream is fingerprinted as it is written); the fingerprint hashes the kind, the
format and, per split in order, its name, digest and record count. The same records in
the same splits always give the same fingerprint, whether they were held in memory or
streamed to files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same records always give the same bytes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class SplitHash:
    """sha256 over one split's records, in order, fed one record at a time."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        self._h.update(canonical(record))
        self._h.update(b"\n")
        self.count += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def combine(kind: str, fmt: str, splits: Iterable[tuple[str, SplitHash]]) -> str:
    h = hashlib.sha256()
    h.update(canonical({"kind": kind, "format": fmt}))
    for name, split in splits:
        h.update(f"\n#{name} {split.count} {split.hexdigest()}".encode())
    return "sha256:" + h.hexdigest()


def fingerprint(kind: str, fmt: str, splits: Iterable[tuple[str, list[dict[str, Any]]]]) -> str:
    """The fingerprint of records held in memory: [("train", [...]), ("validation", [...])]."""
    hashes = []
    for name, records in splits:
        split = SplitHash()
        for rec in records:
            split.add(rec)
        hashes.append((name, split))
    return combine(kind, fmt, hashes)
