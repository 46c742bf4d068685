"""`kubetune reference`: print the FineTuneJob field reference generated from the models."""

from __future__ import annotations

import click

from kubetune_api.reference import reference_markdown


@click.command("reference")
def command() -> None:
    """Print the FineTuneJob field reference (Markdown; docs/reference.md)."""
    click.echo(reference_markdown(), nl=False)
