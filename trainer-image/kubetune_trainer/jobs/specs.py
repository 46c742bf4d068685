"""Reading a job for submission: the same parser and messages as `kubetune validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_api.loader import InvalidSpecError, apply_overrides, load_file, parse_job
from kubetune_api.spec import FineTuneJob

from .model import InvalidJobError


def load_for_submit(spec: str | Path | dict[str, Any], overrides: list[str]) -> FineTuneJob:
    """A validated FineTuneJob from a file or a decoded manifest; InvalidJobError otherwise."""
    if isinstance(spec, dict):
        try:
            data = apply_overrides(_copy(spec), overrides)
            return parse_job(data, "<spec>", by_name=False)
        except InvalidSpecError as exc:
            raise InvalidJobError(f"invalid FineTuneJob, nothing was submitted:\n{exc}") from None
    result = load_file(spec, overrides)
    if result.errors:
        lines = "\n".join(f"{spec}: {e}" for e in result.errors)
        raise InvalidJobError(f"invalid FineTuneJob, nothing was submitted:\n{lines}")
    if len(result.jobs) != 1:
        raise InvalidJobError(
            f"{spec}: holds {len(result.jobs)} FineTuneJobs; submit one job per file"
        )
    return result.jobs[0]


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(data)


def check_registered_dataset(job: FineTuneJob, output_root: str) -> None:
    """dataset://NAME[@vN]: refuse an unknown name/version or changed data before queueing."""
    source = job.spec.dataset.source
    if not source.startswith("dataset://"):
        return
    from kubetune_trainer.dataset_registry import resolve
    from kubetune_trainer.errors import TrainerError

    try:
        resolve(source, output_root, job.spec.output.s3_endpoint)
    except TrainerError as exc:
        raise InvalidJobError(f"dataset.source: {exc}; nothing was submitted") from None
