"""`kubetune serve-api`: the local job queue over HTTP (submit, list, get, logs, metrics,
cancel), with an OpenAPI document at /openapi.json.

kubetune serve-api                                   # http://127.0.0.1:8600, no token
kubetune serve-api --host 0.0.0.0 --token "$TOKEN"   # any other address needs a token
kubetune jobs list --backend http --url http://127.0.0.1:8600
"""

from __future__ import annotations

import click

from ._jobs_cli import refusals


@click.command("serve-api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8600, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", default=None, envvar="KUBETUNE_API_TOKEN",
              help="Required on every request (Authorization: Bearer ...); "
              "mandatory when --host is not a loopback address.")  # fmt: skip
@refusals
def command(host: str, port: int, token: str | None) -> None:
    """Serve the local job queue over HTTP until interrupted."""
    from kubetune_trainer.jobs.http_api import create_app, is_loopback
    from kubetune_trainer.jobs.local import LocalBackend

    if not token and not is_loopback(host):
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give --token (or "
            "KUBETUNE_API_TOKEN) so only callers holding it can submit or cancel jobs"
        )
    from kubetune_trainer.serving.server import serve_forever

    serve_forever(create_app(LocalBackend(), token=token), host, port)
