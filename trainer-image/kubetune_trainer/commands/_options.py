"""Options every command spells the same way.

`--output` is always the artifact root (a folder or s3://bucket/prefix: runs, adapters,
the registry live under it); `-o/--output-format` is always text or json. A file or folder a
command writes besides has its own name (eval --result, compare --report, export --dest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

FORMATS = ("text", "json")
ROOT_HELP = "Artifact root: a folder or s3://bucket/prefix"


def output_root(help: str = "", default_from_env: bool = True) -> Callable[..., Any]:
    """`--output ROOT`; default $KUBETUNE_OUTPUT_URI or ./runs unless default_from_env=False."""
    default: Any = None
    if default_from_env:
        default = lambda: os.environ.get("KUBETUNE_OUTPUT_URI", "./runs")  # noqa: E731
    return click.option(
        "--output",
        "output",
        default=default,
        show_default="$KUBETUNE_OUTPUT_URI or ./runs" if default_from_env else False,
        metavar="ROOT",
        help=f"{ROOT_HELP}{' ' + help if help else ''}.",
    )


def output_format(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-o/--output-format text|json` as the `fmt` parameter."""
    return click.option(
        "-o",
        "--output-format",
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="json: one JSON document on stdout (machine-readable; see docs/cli.md).",
    )(fn)


def emit_json(data: Any) -> None:
    """The one JSON shape on stdout: indented, keys sorted, non-JSON values as strings."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
