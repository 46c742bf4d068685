"""Shared by `submit`, `jobs`, `worker`: backend options, output as text or JSON, errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from kubetune_trainer.commands._options import output_format
from kubetune_trainer.jobs import Client, JobsError


def backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--backend", type=click.Choice(["local", "kubernetes", "http"]),
                     default="local", show_default=True, envvar="KUBETUNE_BACKEND",
                     help="Where jobs run: this machine's queue, a cluster, or a serve-api URL."),
        click.option("--namespace", default=None,
                     help="kubernetes: the namespace (default: the kubeconfig context's)."),
        click.option("--kubeconfig", default=None, envvar="KUBECONFIG",
                     help="kubernetes: kubeconfig file (default ~/.kube/config, else in-cluster)."),
        click.option("--url", default=None, envvar="KUBETUNE_API_URL",
                     help="http: the `kubetune serve-api` address."),
        click.option("--token", default=None, envvar="KUBETUNE_API_TOKEN",
                     help="http: the serve-api token."),
        output_format,
    ]):  # fmt: skip
        fn = opt(fn)
    return fn


def make_client(backend: str, namespace: str | None, kubeconfig: str | None,
                url: str | None, token: str | None) -> Client:  # fmt: skip
    return Client(backend, namespace=namespace, kubeconfig=kubeconfig, url=url, token=token)


def refusals(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A JobsError is one clear line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobsError as exc:
            click.echo(f"kubetune: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper
