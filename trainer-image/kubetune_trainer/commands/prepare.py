"""`kubetune prepare JOB.yaml`: validate and prepare the dataset, write it out, print counts.

    kubetune prepare examples/finance-qa.yaml
    kubetune prepare job.yaml --out /tmp/prepared --set dataset.badRows=skip

Writes train.jsonl and validation.jsonl (default ./runs/<namespace>/<name>/prepared/) and
prints rows read, kept, skipped, filtered, truncated (when the job's tokenizer loads
offline) and the fingerprint. Exit 64: invalid spec; 65: bad data (`file:line: reason`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kubetune_api.constants import ExitCode
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import scheme_of
from kubetune_trainer.commands._job import job_from_file
from kubetune_trainer.errors import BadDataError, ConfigError, TrainerError
from kubetune_trainer.records import PreparedDataset


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")


def _tokenizer(job: FineTuneJob, data: PreparedDataset) -> tuple[Any, str]:
    """The job's tokenizer when it loads without a network, else (None, why not)."""
    base = job.spec.model.base
    if scheme_of(base) == "s3" and not job.spec.model.tokenizer:
        return None, "the base model is on S3 (not downloaded by prepare)"
    try:
        from kubetune_trainer.engine.setup import training_texts
        from kubetune_trainer.modeling import loader

        resolved = loader.resolve_base(job.spec, training_texts(data))
        return loader.load_tokenizer(job.spec, resolved), ""
    except Exception as exc:  # any failure only costs the truncation count
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"no tokenizer could be loaded offline for {base} ({reason[:160]})"


def count_truncated(data: PreparedDataset, tokenizer: Any, job: FineTuneJob) -> int:
    from kubetune_trainer.data.tokenize import tokenize

    ds = job.spec.dataset
    records = data.train + data.validation
    if data.kind in ("sft", "text", "classification"):
        return tokenize(data.kind, records, tokenizer, ds).truncated
    # preference/ranked: an example counts once if any of its answers is cut
    n = 0
    for rec in records:
        answers = rec.get("responses") or [rec["chosen"], rec["rejected"]]
        pairs = [{"prompt": rec["prompt"], "completion": a} for a in answers]
        n += tokenize("sft", pairs, tokenizer, ds).truncated > 0
    return n


@click.command("prepare")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default ./runs/<namespace>/<name>/prepared).")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field, e.g. --set dataset.badRows=skip.")  # fmt: skip
def command(job_file: str, out: str | None, overrides: tuple[str, ...]) -> None:
    """Validate and prepare JOB_FILE's dataset; write train/validation JSONL."""
    from kubetune_trainer.data import prepare

    job = job_from_file(job_file, list(overrides))
    try:
        data = prepare(job)
    except BadDataError as exc:
        click.echo(f"bad data: {exc}", err=True)
        raise SystemExit(ExitCode.BAD_DATA) from None
    except ConfigError as exc:
        click.echo(f"invalid FineTuneJob: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID_SPEC) from None
    except TrainerError as exc:  # e.g. storage unreachable (retryable)
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    tokenizer, why = _tokenizer(job, data)
    if tokenizer is not None and data.format == "papers":
        data = prepare(job, tokenizer)  # chunks sized in the base's tokens, as training does
    folder = Path(out or Path("runs") / job.metadata.namespace / job.metadata.name / "prepared")
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", data.train)
    write_jsonl(folder / "validation.jsonl", data.validation)
    s = data.stats
    click.echo(f"format: {data.format} -> {data.kind} records")
    click.echo(f"read: {s.read} rows; skipped (bad): {s.skipped}; filtered: {s.filtered}")
    click.echo(f"kept: {s.kept} examples (train {len(data.train)}, "
               f"validation {len(data.validation)})")  # fmt: skip
    for problem in s.problems:
        click.echo(f"  skipped {problem}")
    max_len = job.spec.dataset.max_seq_length
    if tokenizer is None:
        click.echo(f"truncated: not counted: {why}")
    else:
        click.echo(f"truncated: {count_truncated(data, tokenizer, job)} examples longer "
                   f"than maxSeqLength {max_len}")  # fmt: skip
    click.echo(f"fingerprint: {data.fingerprint}")
    click.echo(f"wrote: {folder / 'train.jsonl'}, {folder / 'validation.jsonl'}")
