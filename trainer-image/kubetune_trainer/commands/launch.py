"""`kubetune launch`: the trainer pod's entrypoint; starts torchrun from the pod environment.

The operator sets the variables listed in docs/distributed.md; this reads them, checks
them against the mounted spec, and runs
`torchrun --nnodes N --node-rank $JOB_COMPLETION_INDEX --nproc-per-node G --rdzv-backend
c10d --rdzv-endpoint $KUBETUNE_MASTER_ADDR:$KUBETUNE_MASTER_PORT ... -m kubetune_trainer.cli
train --spec $KUBETUNE_SPEC_FILE`. One node with one process runs `train` directly.
The exit code is one of kubetune_api.ExitCode (75 for a lost peer or failed rendezvous).
"""

from __future__ import annotations

import logging
import os
import shlex

import click

from kubetune_api.constants import Env, ExitCode
from kubetune_api.loader import InvalidSpecError, load_job


@click.command("launch")
@click.option("--dry-run", is_flag=True, help="Print the command instead of running it.")
def command(dry_run: bool) -> None:
    """Start this node's share of the job (torchrun), as the operator's pod env describes."""
    from kubetune_trainer.distributed.contract import LaunchEnvError, read_launch_env
    from kubetune_trainer.distributed.torchrun import direct_command, torchrun_args

    logging.basicConfig(level=logging.INFO, format="%(asctime)s kubetune-launch %(message)s")
    spec_file = os.environ.get(Env.SPEC_FILE, "")
    try:
        if not spec_file:
            raise LaunchEnvError(
                f"{Env.SPEC_FILE} is not set; the operator should set it to the mounted "
                "FineTuneJob JSON (e.g. /etc/kubetune/finetunejob.json)"
            )
        job = load_job(spec_file)
        launch = read_launch_env(os.environ, job)
    except (LaunchEnvError, InvalidSpecError, OSError) as exc:
        click.echo(f"kubetune launch: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    direct = launch.direct
    cmd = direct_command(launch.spec_file) if direct else ["torchrun", *torchrun_args(launch)]
    click.echo(f"kubetune launch: node {launch.node_rank}/{launch.nnodes}: {shlex.join(cmd)}",
               err=True)  # fmt: skip
    if dry_run:
        click.echo(shlex.join(cmd))
        return
    from kubetune_trainer.distributed.launcher import exec_direct, run_torchrun

    if direct:
        exec_direct(cmd)
    raise SystemExit(run_torchrun(cmd[1:]))
