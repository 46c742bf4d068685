"""Shared by `run` and `train`: read the job (exit 64 on a bad spec) and set up logging."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from kubetune_api.constants import ExitCode
from kubetune_api.loader import InvalidSpecError, load_job, parse_job
from kubetune_api.spec import FineTuneJob


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "urllib3", "botocore", "filelock", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def job_from_file(path: str, overrides: list[str], namespace: str | None = None) -> FineTuneJob:
    try:
        job = load_job(path, overrides)
    except InvalidSpecError as exc:
        click.echo(f"invalid FineTuneJob: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    except OSError as exc:
        click.echo(f"cannot read {path}: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    if namespace and namespace != job.metadata.namespace:
        data = json.loads(job.model_dump_json(by_alias=True, exclude_none=True))
        data["metadata"]["namespace"] = namespace
        job = parse_job(data, str(Path(path)))
    return job
