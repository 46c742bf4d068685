"""`kubetune compare JOB.yaml --b ADAPTER [--a base|ADAPTER] [--report DIR]`.

Evaluates A and B on the same validation records with the same generation settings and
prints the metrics side by side; `--report DIR` writes comparison.md, comparison.html, the
two results as JSON and rubric.csv for a human reviewer (merged by `kubetune rubric DIR`).
"""

from __future__ import annotations

import click

from kubetune_api.loader import load_job

BASE = "base"


@click.command("compare")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--a",
    "model_a",
    default=BASE,
    show_default=True,
    help="'base' (the job's base model alone) or an adapter folder/s3:// prefix.",
)
@click.option("--b", "model_b", required=True, help="An adapter folder or s3:// prefix.")
@click.option("--base", help="Base model (default: the one adapter B was trained on).")
@click.option("--labels", default="A,B", show_default=True, help="Column names, comma-separated.")
@click.option("--report", type=click.Path(file_okay=False), help="Folder for the report.")
@click.option("--set", "overrides", multiple=True, help="Spec override, e.g. spec.x.y=value.")
def command(
    job_file: str,
    model_a: str,
    model_b: str,
    base: str | None,
    labels: str,
    report: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Compare base vs adapter, or adapter A vs adapter B, on JOB_FILE's validation set."""
    import json
    from pathlib import Path

    from kubetune_trainer.data.prepare import prepare
    from kubetune_trainer.evaluation.compare import compare_models, write_comparison
    from kubetune_trainer.evaluation.models import adapter_base, load_model, localize_dir
    from kubetune_trainer.evaluation.report import metrics_table

    names = [s.strip() for s in labels.split(",")]
    if len(names) != 2 or not all(names):
        raise click.BadParameter(
            "give two comma-separated names, e.g. base,tuned", param_hint="--labels"
        )
    job = load_job(job_file, list(overrides))
    # One base for both sides: A and B must differ only by their adapters.
    if base is None:
        base = adapter_base(localize_dir(model_b))
    lm_b = load_model(base, model_b)
    lm_a = load_model(base, None if model_a == BASE else model_a)
    data = prepare(job, lm_b.tokenizer)
    cmp = compare_models(
        lm_a, lm_b, job, data.kind, data.format, data.validation, (names[0], names[1])
    )
    click.echo(metrics_table([cmp["a"], cmp["b"]], names))
    if report:
        md, page = write_comparison(cmp, report)
        for side in ("a", "b"):
            (Path(report) / f"result-{side}.json").write_text(
                json.dumps(cmp[side], indent=2) + "\n"
            )
        click.echo(f"wrote {md} and {page}")
        click.echo(
            f"human review: fill {Path(report) / 'rubric.csv'}, then `kubetune rubric {report}`"
        )
