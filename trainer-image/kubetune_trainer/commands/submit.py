"""`kubetune submit JOB.yaml`: queue a FineTuneJob (locally or on a cluster); print its ID.

kubetune submit job.yaml --set training.maxSteps=20          # local queue, worker on demand
kubetune submit job.yaml --backend kubernetes --namespace ml   # a FineTuneJob on the cluster
"""

from __future__ import annotations

import click

from ._jobs_cli import backend_options, make_client, refusals
from ._options import emit_json


@click.command("submit")
@click.argument("job_file", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field, e.g. --set training.maxSteps=10.")  # fmt: skip
@backend_options
@refusals
def command(
    job_file: str,
    overrides: tuple[str, ...],
    backend: str,
    namespace: str | None,
    kubeconfig: str | None,
    url: str | None,
    token: str | None,
    fmt: str,
) -> None:
    """Validate JOB_FILE, queue it, and print the job ID (<namespace>/<name>)."""
    client = make_client(backend, namespace, kubeconfig, url, token)
    sets = list(overrides)
    if namespace and backend != "kubernetes":
        sets.append(f"metadata.namespace={namespace}")
    ref = client.backend.submit(job_file, sets)
    if fmt == "json":
        emit_json({"id": ref, "backend": backend})
    else:
        click.echo(ref)
