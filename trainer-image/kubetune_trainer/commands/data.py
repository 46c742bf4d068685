"""`kubetune data placeholders IN OUT`: tools that rewrite dataset files.

kubetune data placeholders raw.jsonl clean.jsonl            # prints what it changed
kubetune data placeholders raw.jsonl clean.jsonl -o json    # the same report as JSON

finance_qa rows that need placeholders (`context_required: true`, no `context`) get
their raw prices, changes and timestamps in `answer` and `rationale` replaced by
`<PRICE>`, `<CHANGE>` and `<TIMESTAMP>`; every other row is copied as it is.
"""

from __future__ import annotations

from pathlib import Path

import click

from kubetune_trainer.commands._options import emit_json, output_format


@click.group("data")
def command() -> None:
    """Rewrite dataset files (finance placeholders)."""


@command.command("placeholders")
@click.argument("src", metavar="IN", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@output_format
def placeholders(src: Path, dst: Path, fmt: str) -> None:
    """Write IN's finance_qa rows to OUT (JSONL) with raw values made placeholders."""
    from kubetune_api.constants import ExitCode
    from kubetune_trainer.data.placeholders import InputError, rewrite_file

    if dst.resolve() == src.resolve():
        click.echo("kubetune: OUT must differ from IN (IN is kept as the original)", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC)
    try:
        report = rewrite_file(src, dst)
    except InputError as exc:
        click.echo(f"kubetune: {exc}", err=True)
        raise SystemExit(ExitCode.BAD_DATA) from None
    if fmt == "json":
        emit_json({"output": str(dst), **report.to_json()})
        return
    for line in report.lines():
        click.echo(line)
    click.echo(f"{dst}: {report.summary()}")
