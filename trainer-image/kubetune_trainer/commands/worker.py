"""`kubetune worker`: run the local queue's jobs (started on demand by `kubetune submit`).

kubetune worker --slots 2        # in the foreground, until stopped (Ctrl-C requeues jobs)
"""

from __future__ import annotations

import click

from ._job import setup_logging
from ._jobs_cli import refusals


@click.command("worker")
@click.option("--slots", type=int, default=None, envvar="KUBETUNE_SLOTS",
              help="Jobs run at the same time (default 1).")  # fmt: skip
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Exit after this many seconds with no job (default: run until stopped).",
)
@refusals
def command(slots: int | None, idle_exit: float | None) -> None:
    """Run queued jobs, at most SLOTS at a time; one worker per kubetune home."""
    from kubetune_trainer.jobs.home import kubetune_home
    from kubetune_trainer.jobs.worker import Worker

    setup_logging()
    Worker(kubetune_home(), slots=slots or 1, idle_exit=idle_exit).run()
