"""Shared by `run` and `train`: read the job (exit 64 on a bad spec) and set up logging."""

from __future__ import annotations

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
        if namespace and namespace != job.metadata.namespace:
            # to_manifest, not a full dump: it leaves out the 4-bit-only options of a
            # non-4-bit job, so the manifest parses again.
            data = job.to_manifest()
            data["metadata"]["namespace"] = namespace
            job = parse_job(data, str(Path(path)))
    except InvalidSpecError as exc:
        click.echo(f"invalid FineTuneJob: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    except OSError as exc:
        click.echo(f"cannot read {path}: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    return job
