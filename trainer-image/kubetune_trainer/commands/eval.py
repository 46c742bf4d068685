"""`kubetune eval JOB.yaml [--adapter URI] [--base URI] [--result result.json] [-o json]`.

Evaluates the base model (or base + adapter) on the job's validation data and prints the
metrics; the full result (per-example outputs, generation settings) goes to `--result`, or
to stdout as JSON with `-o json` (the same document).
"""

from __future__ import annotations

import click

from kubetune_api.loader import load_job
from kubetune_trainer.commands._options import emit_json, output_format


@click.command("eval")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--adapter", help="Adapter folder or s3:// prefix (default: the base alone).")
@click.option("--base", help="Base model (default: the job's spec.model.base).")
@click.option("--result", type=click.Path(dir_okay=False), help="Write the full result as JSON.")
@click.option("--max-samples", type=int, help="Override evaluation.maxSamples.")
@click.option("--set", "overrides", multiple=True, help="Spec override, e.g. spec.x.y=value.")
@output_format
def command(
    job_file: str,
    adapter: str | None,
    base: str | None,
    result: str | None,
    max_samples: int | None,
    overrides: tuple[str, ...],
    fmt: str,
) -> None:
    """Evaluate on JOB_FILE's validation set: loss, perplexity, ROUGE-L, BLEU, domain metrics."""
    from kubetune_trainer.evaluation.report import metrics_table
    from kubetune_trainer.evaluation.runner import evaluate_job, write_result

    sets = list(overrides)
    if max_samples is not None:
        sets.append(f"spec.evaluation.maxSamples={max_samples}")
    job = load_job(job_file, sets)
    got = evaluate_job(job, adapter=adapter, base=base)
    if result:
        write_result(got, result)
    if fmt == "json":
        emit_json(got)
        return
    click.echo(metrics_table([got]))
    if result:
        click.echo(f"wrote {result}")
