"""`kubetune run JOB.yaml`: run a FineTuneJob on this machine, end to end.

kubetune run examples/quickstart.yaml
kubetune run job.yaml --set training.maxSteps=20 --output ./runs --no-resume
"""

from __future__ import annotations

import click

from ._job import job_from_file, setup_logging
from ._options import ROOT_HELP


@click.command("run")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field, e.g. --set training.maxSteps=10.",
)
@click.option(
    "--output", default=None, metavar="ROOT", help=f"{ROOT_HELP} (default: spec.output.uri)."
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from the latest committed checkpoint of this job (only if it was trained "
    "on the same spec and data); --no-resume starts fresh and moves earlier checkpoints "
    "to <run>/superseded/ (runPolicy.resume: never).",
)
def command(job_file: str, overrides: tuple[str, ...], output: str | None, resume: bool) -> None:
    """Prepare, train, evaluate, save the adapter and the report of JOB_FILE."""
    setup_logging()
    job = job_from_file(job_file, list(overrides))
    from kubetune_trainer.distributed.contract import needs_torchrun

    if needs_torchrun(job):
        # Several processes, simulated nodes or DeepSpeed: torchrun on this machine, each
        # node started through `kubetune launch` exactly as in a pod (docs/distributed.md).
        from kubetune_trainer.distributed import local_launch

        raise SystemExit(local_launch(job_file, overrides, output=output, resume=resume))
    from kubetune_trainer.engine.main import execute

    code, result = execute(job, output=output, resume=resume)
    if result is not None:
        click.echo("")
        if result.adapter:
            click.echo(f"adapter: {result.adapter.uri}")
        click.echo(f"report:  {result.report_uri}/report.md")
        if result.base_eval_loss is not None and result.tuned_eval_loss is not None:
            click.echo(
                f"eval loss: base {result.base_eval_loss:.4f} -> tuned {result.tuned_eval_loss:.4f}"
            )
    raise SystemExit(code)
