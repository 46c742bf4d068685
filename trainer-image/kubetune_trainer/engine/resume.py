"""Resume: fetch the newest verified checkpoint, and keep the metrics history continuous."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .callbacks import STATE_FILE

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"


def find(ckpts: Any, staging: Path, rank: int) -> tuple[Any, Path] | None:
    """(ref, local folder) of the newest checkpoint that verifies; torn ones are skipped."""
    got = ckpts.latest_verified(staging / f"resume-rank{rank}")
    if got is None:
        return None
    ref, path = got
    # The Trainer reads the step from trainer_state.json; the folder name is cosmetic.
    final = staging / f"resume-{ref.name}-rank{rank}"
    path.rename(final)
    return ref, final


def engine_state(folder: Path) -> dict[str, Any]:
    f = folder / STATE_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def restore_metrics(store: Any, report_dir: Path, upto_step: int) -> list[dict[str, Any]]:
    """Bring back metrics.jsonl rows up to the resumed step (later ones are replayed);
    returns the rows kept."""
    report_dir.mkdir(parents=True, exist_ok=True)
    if upto_step <= 0:
        return []
    try:
        data = store.get_bytes(f"report/{METRICS}").decode()
    except FileNotFoundError:
        return []
    rows = [(line, json.loads(line)) for line in data.splitlines() if line.strip()]
    kept = [(line, row) for line, row in rows if row.get("step", 0) <= upto_step]
    (report_dir / METRICS).write_text("".join(line + "\n" for line, _ in kept))
    return [row for _, row in kept]


def upload_metrics(store: Any, report_dir: Path) -> None:
    f = report_dir / METRICS
    if f.is_file():
        store.put_file(f, f"report/{METRICS}")
