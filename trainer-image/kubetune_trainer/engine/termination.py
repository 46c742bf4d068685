"""The one-line JSON summary the operator reads from the pod's termination log."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from kubetune_api.constants import TERMINATION_LOG_PATH, Env

log = logging.getLogger(__name__)
_LIMIT = 4000  # Kubernetes keeps at most 4096 bytes of the termination message


def termination_path() -> str | None:
    path = os.environ.get(Env.TERMINATION_LOG)
    if path:
        return path
    if os.path.exists(TERMINATION_LOG_PATH) and os.access(TERMINATION_LOG_PATH, os.W_OK):
        return TERMINATION_LOG_PATH
    return None


def write_summary(summary: dict[str, Any]) -> None:
    """Write `summary` as one JSON line; a message too long is cut, never the JSON."""
    path = termination_path()
    if path is None:
        return
    data = {k: v for k, v in summary.items() if v is not None}
    line = json.dumps(data, sort_keys=True)
    if len(line) > _LIMIT and "message" in data:
        keep = max(0, len(str(data["message"])) - (len(line) - _LIMIT) - 3)
        data["message"] = str(data["message"])[:keep] + "..."
        line = json.dumps(data, sort_keys=True)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:
        log.warning("cannot write termination log %s: %s", path, exc)
