"""Shared by `run`, `train` and `prepare`: read the job (exit 64 on a bad spec), resolve
its relative paths, and set up logging.

Relative paths in a spec file (dataset.source, dataset.validation.source,
dataset.trading.news, model.base, model.tokenizer) are looked up next to the spec file
first, then in the working directory (where they were always looked up, so jobs written
for that keep working). A value given with `--set` is relative to the working directory
only, as a shell user expects. output.uri stays relative to the working directory, like
`--output`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from kubetune_api.constants import ExitCode
from kubetune_api.loader import InvalidSpecError, load_job, parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import redact_text, scheme_of

# Spec fields that may hold a local path, as `--set` names them.
PATH_FIELDS = ("dataset.source", "dataset.validation.source", "dataset.trading.news",
               "model.base", "model.tokenizer")  # fmt: skip


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
        # to_manifest, not a full dump: it leaves out the 4-bit-only options of a non-4-bit
        # job (and every default), so the manifest parses again.
        data = job.to_manifest()
        changed = resolve_paths(data["spec"], Path(path).resolve().parent, overrides)
        if namespace and namespace != job.metadata.namespace:
            data["metadata"]["namespace"] = namespace
            changed = True
        if changed:
            job = parse_job(data, str(Path(path)))
    except InvalidSpecError as exc:
        click.echo(redact_text(f"invalid FineTuneJob: {exc}"), err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    except OSError as exc:
        click.echo(f"cannot read {path}: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    return job


def resolve_paths(spec: dict, folder: Path, overrides: list[str]) -> bool:
    """Point the spec's relative local paths at `folder` (the spec file's) where they exist
    there; values from --set are left to the working directory. True when any changed."""
    given = {o.split("=", 1)[0].strip() for o in overrides}
    changed = False
    for dotted in PATH_FIELDS:
        if any(dotted == k or dotted.startswith(k + ".") for k in given):
            continue  # --set dataset.source=... or --set 'dataset={...}'
        *parents, leaf = dotted.split(".")
        node = spec
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if not isinstance(value, str) or scheme_of(value) or Path(value).is_absolute():
            continue
        beside = folder / Path(value).expanduser()
        if beside.exists() and beside.resolve() != Path(value).resolve():
            node[leaf] = str(beside)
            changed = True
    return changed
