"""Progress and metrics of a run, read from its own artifacts (as the trainer wrote them):
report/metrics.jsonl (one row per logged step), the committed checkpoints, the summary."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def metric_rows(run_uri: str | None) -> list[dict[str, Any]]:
    if not run_uri:
        return []
    try:
        from kubetune_trainer.storage import open_store

        raw = open_store(run_uri).get_bytes("report/metrics.jsonl")
    except Exception:  # not written yet (or the store is unreachable): no rows so far
        return []
    rows = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(row, dict):
            rows.append(row)
    return rows


def latest_checkpoint(run_uri: str | None) -> tuple[int, str] | None:
    if not run_uri:
        return None
    try:
        from kubetune_trainer.storage import open_store
        from kubetune_trainer.storage.checkpoints import CheckpointStore

        quiet = logging.getLogger("kubetune_trainer.storage")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # a checkpoint being written now is "torn": not news
        try:
            ref = CheckpointStore(open_store(run_uri)).latest()
        finally:
            quiet.setLevel(level)
    except Exception as exc:
        log.debug("checkpoints of %s: %s", run_uri, exc)
        return None
    return (ref.step, ref.uri) if ref is not None else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each numeric metric, and the last step seen."""
    last: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                last[key] = value
    return last
