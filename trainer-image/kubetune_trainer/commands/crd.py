"""`kubetune crd`: print the CRD generated from the pydantic models."""

from __future__ import annotations

import click

from kubetune_api.crd import crd_yaml


@click.command("crd")
def command() -> None:
    """Print the FineTuneJob CustomResourceDefinition (YAML)."""
    click.echo(crd_yaml(), nl=False)
