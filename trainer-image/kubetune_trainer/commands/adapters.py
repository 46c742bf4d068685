"""`kubetune adapters list [--output ROOT] [-o json]` and `kubetune adapters show NAME[:VERSION]`.

The registry lives under the output root (spec.output.uri; a folder or s3://), see
kubetune_trainer.registry.
"""

from __future__ import annotations

import json

import click

from kubetune_trainer.commands._options import emit_json, output_format, output_root

_OUTPUT = output_root("holding registry/ (the jobs' spec.output.uri)")
_ENDPOINT = click.option("--s3-endpoint", help="S3-compatible endpoint URL.")


@click.group("adapters")
def command() -> None:
    """List and show adapters in the registry."""


@command.command("list")
@_OUTPUT
@_ENDPOINT
@output_format
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json.")
def list_cmd(output: str, s3_endpoint: str | None, fmt: str, as_json: bool) -> None:
    """The latest version of every adapter."""
    from kubetune_trainer.registry import list_adapters, load_index

    records = list_adapters(output, s3_endpoint)
    if as_json:  # the old spelling: its exact output
        click.echo(json.dumps(records, indent=2))
        return
    if fmt == "json":
        emit_json({"adapters": records})
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
@output_format
def show_cmd(ref: str, output: str, s3_endpoint: str | None, fmt: str) -> None:
    """One record: REF is NAME (latest) or NAME:VERSION (text and json both print JSON)."""
    from kubetune_trainer.errors import ConfigError
    from kubetune_trainer.registry import get

    try:
        record = get(output, ref, s3_endpoint)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        emit_json(record)
        return
    click.echo(json.dumps(record, indent=2))
