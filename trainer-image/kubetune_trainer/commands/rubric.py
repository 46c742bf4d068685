"""`kubetune rubric DIR`: merge a reviewer's clarity/correctness scores into a comparison.

kubetune compare job.yaml --b ./adapter --report cmp/   # also writes cmp/rubric.csv to fill
kubetune rubric cmp/                              # -> cmp/rubric.json + a table in comparison.md
"""

from __future__ import annotations

import click


@click.command("rubric")
@click.argument("report_dir", type=click.Path(file_okay=False))
def command(report_dir: str) -> None:
    """Merge REPORT_DIR/rubric.csv (scores 1-5) into the comparison report."""
    from kubetune_api.constants import ExitCode
    from kubetune_trainer.evaluation.rubric import RESULT, SCORES, RubricError, merge

    try:
        summary = merge(report_dir)
    except RubricError as exc:
        click.echo(f"kubetune: {exc}", err=True)
        raise SystemExit(ExitCode.BAD_DATA) from None
    for model, m in summary["models"].items():
        means = ", ".join(f"{c} {m[f'{c}_mean']}" for c in SCORES)
        click.echo(f"{model}: {means} ({m['clarity_scored']} scored)")
    click.echo(f"wrote {report_dir.rstrip('/')}/{RESULT} and the table in comparison.md")
