"""`kubetune jobs list|get|wait|logs|metrics|cancel`: follow submitted jobs by ID.

kubetune jobs list
kubetune jobs wait team/my-job --timeout 600 && kubetune jobs metrics team/my-job -o json
kubetune jobs logs team/my-job --follow
"""

from __future__ import annotations

from typing import Any

import click

from kubetune_trainer.jobs import JobInfo

from ._jobs_cli import backend_options, make_client, refusals
from ._options import emit_json

_COLUMNS = ("ID", "PHASE", "REASON", "ATTEMPT", "CREATED")


@click.group("jobs")
def command() -> None:
    """Follow jobs sent with `kubetune submit`."""


def _client(kw: dict[str, Any]) -> Any:
    return make_client(kw["backend"], kw["namespace"], kw["kubeconfig"], kw["url"], kw["token"])


def _show(info: JobInfo) -> None:
    click.echo(f"id:        {info.id}")
    click.echo(f"phase:     {info.phase}" + (f" ({info.reason})" if info.reason else ""))
    if info.message:
        click.echo(f"message:   {info.message}")
    if info.retryable and info.phase == "Failed":
        click.echo("retryable: yes (a worker resumes it from its last committed checkpoint)")
    if info.step is not None:
        total = f"/{info.max_steps}" if info.max_steps else ""
        click.echo(f"step:      {info.step}{total}")
    if info.checkpoint:
        click.echo(f"checkpoint: {info.checkpoint}")
    if info.run_uri:
        click.echo(f"artifacts: {info.run_uri}")
    click.echo(f"attempt:   {info.attempt}   created {info.created_at or '-'}")


@command.command("list")
@backend_options
@refusals
def list_(fmt: str, **kw: Any) -> None:
    """Every job, oldest first."""
    infos = _client(kw).list()
    if fmt == "json":
        emit_json([i.to_dict() for i in infos])
        return
    rows = [_COLUMNS] + [
        (i.id, i.phase, i.reason or "", str(i.attempt), i.created_at or "") for i in infos
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_COLUMNS))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@command.command("get")
@click.argument("job_id")
@backend_options
@refusals
def get(job_id: str, fmt: str, **kw: Any) -> None:
    """Phase, reason, progress and artifacts of JOB_ID."""
    info = _client(kw).get(job_id)
    emit_json(info.to_dict()) if fmt == "json" else _show(info)


@command.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after N seconds (exit 2).")
@click.option("--until", "until", multiple=True, default=("Succeeded",), show_default=True,
              help="Phase(s) to wait for; a finished job always ends the wait.")  # fmt: skip
@backend_options
@refusals
def wait(job_id: str, timeout: float | None, until: tuple[str, ...], fmt: str, **kw: Any) -> None:
    """Block until JOB_ID reaches --until or finishes; exit 0 if it reached --until, else 1."""
    info = _client(kw).wait(job_id, until=set(until), timeout=timeout)
    emit_json(info.to_dict()) if fmt == "json" else _show(info)
    if info.phase not in until:
        raise SystemExit(1)


@command.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--rank", type=int, default=0, show_default=True, help="Which rank's log.")
@backend_options
@refusals
def logs(job_id: str, follow: bool, rank: int, fmt: str, **kw: Any) -> None:
    """The output of JOB_ID (its trainer's stdout and stderr)."""
    for chunk in _client(kw).logs(job_id, follow=follow, rank=rank):
        click.echo(chunk, nl=False)


@command.command("metrics")
@click.argument("job_id")
@backend_options
@refusals
def metrics(job_id: str, fmt: str, **kw: Any) -> None:
    """The latest value of each metric of JOB_ID (-o json: every logged row too)."""
    data = _client(kw).metrics(job_id)
    if fmt == "json":
        emit_json(data)
        return
    click.echo(f"{data['id']}: {data.get('phase')}")
    for key, value in sorted((data.get("latest") or {}).items()):
        click.echo(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    if data.get("checkpoint"):
        click.echo(f"  checkpoint: {data['checkpoint']}")


@command.command("cancel")
@click.argument("job_id")
@backend_options
@refusals
def cancel(job_id: str, fmt: str, **kw: Any) -> None:
    """Stop JOB_ID: a running trainer saves a checkpoint first (SIGTERM)."""
    info = _client(kw).cancel(job_id)
    if fmt == "json":
        emit_json(info.to_dict())
    else:
        stopping = " (stopping: saving a checkpoint first)" if info.phase == "Running" else ""
        click.echo(f"{info.id}: {info.phase}{stopping}")
