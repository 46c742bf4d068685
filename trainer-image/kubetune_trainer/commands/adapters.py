"""`kubetune adapters list [--output URI]` and `kubetune adapters show NAME[:VERSION]`.

The registry lives under the output root (spec.output.uri; a folder or s3://), see
kubetune_trainer.registry.
"""

from __future__ import annotations

import json
import os

import click

_OUTPUT = click.option(
    "--output",
    "output",
    default=lambda: os.environ.get("KUBETUNE_OUTPUT_URI", "./runs"),
    show_default="$KUBETUNE_OUTPUT_URI or ./runs",
    help="Output root holding registry/ (a folder or s3://bucket/prefix).",
)
_ENDPOINT = click.option("--s3-endpoint", help="S3-compatible endpoint URL.")


@click.group("adapters")
def command() -> None:
    """List and show adapters in the registry."""


@command.command("list")
@_OUTPUT
@_ENDPOINT
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_cmd(output: str, s3_endpoint: str | None, as_json: bool) -> None:
    """The latest version of every adapter."""
    from kubetune_trainer.registry import list_adapters, load_index

    records = list_adapters(output, s3_endpoint)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"no adapters registered under {output.rstrip('/')}/registry")
        return
    index = load_index(output, s3_endpoint)
    click.echo(f"{'NAME':<24}{'LATEST':>7}{'VERSIONS':>9}  {'BASE':<28}{'FINAL LOSS':>11}  CREATED")
    for r in records:
        loss = r.get("final_loss")
        base = str(r.get("base_model"))
        base = base if len(base) <= 27 else "…" + base[-26:]  # keep the distinctive end
        click.echo(
            f"{r['name']:<24}{'v' + str(r['version']):>7}{len(index[r['name']]['versions']):>9}  "
            f"{base:<28}"
            f"{(f'{loss:.4f}' if isinstance(loss, (int, float)) else '-'):>11}  {r['created_at']}"
        )


@command.command("show")
@click.argument("ref")
@_OUTPUT
@_ENDPOINT
def show_cmd(ref: str, output: str, s3_endpoint: str | None) -> None:
    """One record as JSON: REF is NAME (latest) or NAME:VERSION."""
    from kubetune_trainer.errors import ConfigError
    from kubetune_trainer.registry import get

    try:
        record = get(output, ref, s3_endpoint)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(record, indent=2))
