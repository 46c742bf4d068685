"""`kubetune datasets register|list|show`: datasets by name and version.

kubetune datasets register finance-qa examples/data/finance_qa/train.jsonl --format finance_qa
kubetune datasets show finance-qa@v1
# then in a FineTuneJob:  dataset: {source: dataset://finance-qa@v1}

Records live under <output>/registry/_datasets (see kubetune_trainer.dataset_registry).
"""

from __future__ import annotations

import json
import typing

import click

from kubetune_api.spec_data import DatasetFormat
from kubetune_trainer.commands._options import output_format, output_root

_OUTPUT = output_root("holding registry/ (the jobs' spec.output.uri)")
_ENDPOINT = click.option("--s3-endpoint", help="S3-compatible endpoint URL.")
_JSON = output_format


def _refusals(fn: typing.Callable[..., None]) -> typing.Callable[..., None]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: typing.Any, **kwargs: typing.Any) -> None:
        from kubetune_trainer.errors import TrainerError

        try:
            fn(*args, **kwargs)
        except TrainerError as exc:
            click.echo(f"kubetune: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper


@click.group("datasets")
def command() -> None:
    """Register, list and show datasets (used as dataset.source: dataset://NAME[@vN])."""


def _show(r: dict[str, typing.Any]) -> None:
    counts = r.get("records") or {}
    click.echo(f"dataset:     {r['name']} v{r['version']}  (dataset://{r['name']}@v{r['version']})")
    click.echo(f"source:      {r['source']}")
    click.echo(f"format:      {r['format']} ({r['kind']} records, objective {r['objective']})")
    click.echo(f"records:     {counts.get('train')} train / {counts.get('validation')} validation")
    click.echo(f"raw sha256:  {r['raw_sha256']}")
    click.echo(f"fingerprint: {r['records_fingerprint']}")
    click.echo(f"created:     {r['created_at']}")


@command.command("register")
@click.argument("name")
@click.argument("source")
@click.option("--format", "data_format", default="auto", show_default=True,
              type=click.Choice(list(typing.get_args(DatasetFormat))),
              help="Record layout (auto detects it).")  # fmt: skip
@click.option(
    "--objective",
    default="sft",
    show_default=True,
    help="The objective the records are prepared for (sft, dpo, ...).",
)
@_OUTPUT
@_ENDPOINT
@_JSON
@_refusals
def register_cmd(name: str, source: str, data_format: str, objective: str, output: str,
                 s3_endpoint: str | None, fmt: str) -> None:  # fmt: skip
    """Prepare SOURCE once and record it as the next version of NAME."""
    from kubetune_trainer.dataset_registry import register

    record = register(name, source, output, data_format, objective, s3_endpoint)
    if fmt == "json":
        click.echo(json.dumps(record, indent=2))
    else:
        _show(record)


@command.command("list")
@_OUTPUT
@_ENDPOINT
@_JSON
@_refusals
def list_cmd(output: str, s3_endpoint: str | None, fmt: str) -> None:
    """The latest version of every dataset."""
    from kubetune_trainer.dataset_registry import list_datasets

    records = list_datasets(output, s3_endpoint)
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"no datasets registered under {output.rstrip('/')}/registry")
        return
    click.echo(f"{'NAME':<24}{'LATEST':>7}  {'FORMAT':<12}{'TRAIN':>7}  SOURCE")
    for r in records:
        train = (r.get("records") or {}).get("train")
        click.echo(f"{r['name']:<24}{'v' + str(r['version']):>7}  {r['format']:<12}{train:>7}  "
                   f"{r['source']}")  # fmt: skip


@command.command("show")
@click.argument("ref")
@_OUTPUT
@_ENDPOINT
@_JSON
@_refusals
def show_cmd(ref: str, output: str, s3_endpoint: str | None, fmt: str) -> None:
    """One dataset: NAME (latest) or NAME@vN."""
    from kubetune_trainer.dataset_registry import get, parse_dataset_ref

    name, version = parse_dataset_ref(ref if ref.startswith("dataset://") else f"dataset://{ref}")
    record = get(output, name, version, s3_endpoint)
    if fmt == "json":
        click.echo(json.dumps(record, indent=2))
    else:
        _show(record)
