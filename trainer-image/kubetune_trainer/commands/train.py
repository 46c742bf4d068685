"""`kubetune train --spec FILE`: the training entry point inside pods and under torchrun.

The spec is a FineTuneJob as YAML or the operator's JSON file ($KUBETUNE_SPEC_FILE when
--spec is omitted); namespace and attempt come from the pod environment.
"""

from __future__ import annotations

import os

import click

from kubetune_api.constants import Env

from ._job import job_from_file, setup_logging
from ._options import ROOT_HELP


@click.command("train")
@click.option(
    "--spec",
    "spec_file",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"FineTuneJob YAML/JSON (default: ${Env.SPEC_FILE}).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec field."
)
@click.option(
    "--output", default=None, metavar="ROOT", help=f"{ROOT_HELP} (default: ${Env.OUTPUT_URI})."
)
@click.option("--resume/--no-resume", default=True, show_default=True)
def command(
    spec_file: str | None, overrides: tuple[str, ...], output: str | None, resume: bool
) -> None:
    """Train the FineTuneJob in --spec; exit with the documented code."""
    setup_logging()
    path = spec_file or os.environ.get(Env.SPEC_FILE)
    if not path:
        raise click.UsageError(f"give --spec FILE or set {Env.SPEC_FILE}")
    job = job_from_file(path, list(overrides), namespace=os.environ.get(Env.NAMESPACE))
    from kubetune_trainer.distributed import exit_rank, start_parent_watchdog
    from kubetune_trainer.engine.main import execute

    start_parent_watchdog()  # under torchrun: exit 75 if the agent dies
    code, _ = execute(job, output=output, resume=resume)
    exit_rank(code)  # destroys the process group; ranks skip interpreter teardown
