"""`kubetune validate FILE...`: exit 0 when every FineTuneJob is valid, else 1."""

from __future__ import annotations

import click

from kubetune_api.loader import load_file

MAX_NAMES_SHOWN = 10


@click.command("validate")
# No exists/dir_okay checks here: a missing file or a folder is reported like any unreadable
# file (`path: cannot read ...`, exit 1), not as a click usage error (exit 2).
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def command(files: tuple[str, ...], quiet: bool) -> None:
    """Check FineTuneJob FILES; print every error as `file: field.path: message`."""
    bad = 0
    for path in files:
        result = load_file(path)
        for err in result.errors:
            click.echo(f"{path}: {err}", err=True)
        if result.errors:
            bad += 1
        elif not quiet:
            names = [j.metadata.name for j in result.jobs]
            shown = ", ".join(names[:MAX_NAMES_SHOWN])
            if len(names) > MAX_NAMES_SHOWN:  # a file of many jobs: one short line still
                shown += f", ... {len(names)} FineTuneJobs in all"
            click.echo(f"{path}: ok ({shown})")
    if bad:
        click.echo(f"{bad} of {len(files)} file(s) invalid", err=True)
        raise SystemExit(1)
