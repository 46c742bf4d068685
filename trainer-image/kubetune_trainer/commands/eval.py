"""`kubetune eval JOB.yaml [--adapter URI] [--base URI] [-o result.json]`.

Evaluates the base model (or base + adapter) on the job's validation data and prints the
metrics; the full result (per-example outputs, generation settings) goes to `-o`.
"""

from __future__ import annotations

import click

from kubetune_api.loader import load_job


@click.command("eval")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--adapter", help="Adapter folder or s3:// prefix (default: the base alone).")
@click.option("--base", help="Base model (default: the job's spec.model.base).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the result JSON.")
@click.option("--max-samples", type=int, help="Override evaluation.maxSamples.")
@click.option("--set", "overrides", multiple=True, help="Spec override, e.g. spec.x.y=value.")
def command(
    job_file: str,
    adapter: str | None,
    base: str | None,
    output: str | None,
    max_samples: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Evaluate on JOB_FILE's validation set: loss, perplexity, ROUGE-L, BLEU, domain metrics."""
    from kubetune_trainer.evaluation.report import metrics_table
    from kubetune_trainer.evaluation.runner import evaluate_job, write_result

    sets = list(overrides)
    if max_samples is not None:
        sets.append(f"spec.evaluation.maxSamples={max_samples}")
    job = load_job(job_file, sets)
    result = evaluate_job(job, adapter=adapter, base=base)
    click.echo(metrics_table([result]))
    if output:
        write_result(result, output)
        click.echo(f"wrote {output}")
