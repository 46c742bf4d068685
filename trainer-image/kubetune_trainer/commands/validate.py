"""`kubetune validate FILE... [-o json]`: exit 0 when every FineTuneJob is valid, else 1.

-o json prints {"files": [{"path", "ok", "jobs": [names], "errors": [messages]}],
"invalid": N} on stdout (the exit code is the same).
"""

from __future__ import annotations

import click

from kubetune_api.loader import load_file
from kubetune_trainer.commands._options import emit_json, output_format

MAX_NAMES_SHOWN = 10


@click.command("validate")
# No exists/dir_okay checks here: a missing file or a folder is reported like any unreadable
# file (`path: cannot read ...`, exit 1), not as a click usage error (exit 2).
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
@output_format
def command(files: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """Check FineTuneJob FILES; print every error as `file: field.path: message`."""
    if fmt == "json":
        _json(files)
        return
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


def _json(files: tuple[str, ...]) -> None:
    report = []
    for path in files:
        result = load_file(path)
        report.append({"path": path, "ok": not result.errors,
                       "jobs": [j.metadata.name for j in result.jobs] if not result.errors else [],
                       "errors": [str(e) for e in result.errors]})  # fmt: skip
    invalid = sum(not r["ok"] for r in report)
    emit_json({"files": report, "invalid": invalid})
    if invalid:
        raise SystemExit(1)
