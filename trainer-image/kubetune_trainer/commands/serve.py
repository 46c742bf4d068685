"""`kubetune serve [--adapter URI] [--base URI] [--job JOB.yaml] [--port 8000]`.

Serves base + adapter (or a merged model folder given as --base) over HTTP:
POST /v1/completions, GET /healthz. With --job, requests use that job's prompt layout
(dataset format, template, system prompt) and its generation settings as defaults.

    kubetune serve --adapter runs/default/fin-qa/adapter --job examples/quickstart.yaml
    curl -s localhost:8000/v1/completions -H 'content-type: application/json' \\
         -d '{"question": "What is AAPL trading at?", "tickers": ["AAPL"]}'
"""

from __future__ import annotations

import click

FORMATS = ("auto", "finance_qa", "qa", "instruction", "chat", "trading", "papers")


@click.command("serve")
@click.option("--adapter", help="Adapter folder or s3:// prefix.")
@click.option("--base", help="Base model or merged model folder (default: from the adapter).")
@click.option("--job", "job_file", type=click.Path(exists=True, dir_okay=False),
              help="FineTuneJob whose prompt layout and generation settings to use.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Prompt layout (default: the job's dataset.format, else raw).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-prompt-tokens", default=2048, show_default=True, type=click.IntRange(1))
@click.option("--max-new-tokens-limit", default=512, show_default=True, type=click.IntRange(1))
def command(
    adapter: str | None,
    base: str | None,
    job_file: str | None,
    fmt: str | None,
    host: str,
    port: int,
    max_prompt_tokens: int,
    max_new_tokens_limit: int,
) -> None:
    """Serve a model over HTTP until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    from kubetune_api.loader import load_job
    from kubetune_trainer.errors import TrainerError
    from kubetune_trainer.evaluation.models import load_model
    from kubetune_trainer.serving.app import ServeConfig, create_app
    from kubetune_trainer.serving.server import serve_forever

    cfg = ServeConfig(
        max_prompt_tokens=max_prompt_tokens, max_new_tokens_limit=max_new_tokens_limit
    )
    if job_file:
        job = load_job(job_file)
        ds = job.spec.dataset
        cfg.format, cfg.template, cfg.system_prompt = ds.format, ds.template, ds.system_prompt
        cfg.defaults = job.spec.evaluation.generation
        base = base or (None if adapter else job.spec.model.base)
    if fmt:
        cfg.format = fmt
    try:
        lm = load_model(base, adapter)
    except TrainerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {lm.label} ({cfg.format} layout) on http://{host}:{port}")
    serve_forever(create_app(lm, cfg), host, port)
