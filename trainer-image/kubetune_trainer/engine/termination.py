"""Where the one-line summary the operator reads goes (kubetune_api.termination defines it)."""

from __future__ import annotations

import logging
import os

from kubetune_api.constants import TERMINATION_LOG_PATH, Env
from kubetune_api.termination import TerminationSummary

log = logging.getLogger(__name__)


def termination_path() -> str | None:
    path = os.environ.get(Env.TERMINATION_LOG)
    if path:
        return path
    if os.path.exists(TERMINATION_LOG_PATH) and os.access(TERMINATION_LOG_PATH, os.W_OK):
        return TERMINATION_LOG_PATH
    return None


def write_summary(summary: TerminationSummary) -> None:
    """Write `summary` as one JSON line (the model keeps it within Kubernetes' limit)."""
    path = termination_path()
    if path is None:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(summary.to_line() + "\n")
    except OSError as exc:
        log.warning("cannot write termination log %s: %s", path, exc)
