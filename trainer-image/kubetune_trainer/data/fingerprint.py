"""A stable identity for prepared data: sha256 over canonical JSON of the records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same records always give the same bytes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def fingerprint(kind: str, fmt: str, splits: Iterable[tuple[str, list[dict[str, Any]]]]) -> str:
    h = hashlib.sha256()
    h.update(canonical({"kind": kind, "format": fmt}))
    for name, records in splits:
        h.update(b"\n#" + name.encode() + b"\n")
        for rec in records:
            h.update(canonical(rec))
            h.update(b"\n")
    return "sha256:" + h.hexdigest()
