"""`kubetune prepare JOB.yaml`: validate and prepare the dataset, write it out, print counts.

    kubetune prepare examples/finance-qa.yaml
    kubetune prepare job.yaml --output /tmp/runs --set dataset.badRows=skip
    kubetune prepare job.yaml --show 3     # 3 training examples as the model sees them
    kubetune prepare job.yaml -o json      # the same summary as one JSON document

Writes train.jsonl and validation.jsonl to <ROOT>/<namespace>/<name>/prepared/ (--output
ROOT, default ./runs; the hidden, deprecated --out DIR writes to DIR itself) and
prints rows read, kept, skipped, filtered, truncated (when the job's tokenizer loads
offline) and the fingerprint. Exit 64: invalid spec; 65: bad data (`file:line: reason`).

Records are streamed to the files as they are made (data.prepare.prepare_to_files: one row
in memory at a time, except trading, whose chronological split needs all examples), and
the truncation count reads them back line by line, so the input may exceed memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import click

from kubetune_api.constants import ExitCode
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import scheme_of
from kubetune_trainer.commands._job import job_from_file
from kubetune_trainer.commands._options import emit_json, output_format
from kubetune_trainer.errors import BadDataError, ConfigError, TrainerError
from kubetune_trainer.records import PreparedDataset, PreparedFiles

BATCH = 256  # records tokenized at a time when counting truncation


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def _train_texts(data: PreparedFiles) -> Iterator[str]:
    """The text a built-in tokenizer is trained on, as the engine takes it from the records
    (engine.setup.training_texts), read back from train.jsonl one record at a time."""
    from kubetune_trainer.engine.setup import training_texts

    for rec in read_jsonl(data.train_path):
        yield from training_texts(PreparedDataset(data.kind, data.format, [rec], [], ""))


def _tokenizer(job: FineTuneJob, data: PreparedFiles) -> tuple[Any, str]:
    """The job's tokenizer when it loads without a network, else (None, why not)."""
    base = job.spec.model.base
    if scheme_of(base) == "s3" and not job.spec.model.tokenizer:
        return None, "the base model is on S3 (not downloaded by prepare)"
    try:
        from kubetune_trainer.modeling import loader

        resolved = loader.resolve_base(job.spec, _train_texts(data))
        return loader.load_tokenizer(job.spec, resolved), ""
    except Exception as exc:  # any failure only costs the truncation count
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"no tokenizer could be loaded offline for {base} ({reason[:160]})"


def count_truncated(
    kind: str, records: Iterable[dict[str, Any]], tokenizer: Any, job: FineTuneJob
) -> int:
    """Examples longer than maxSeqLength, tokenized BATCH records at a time."""
    from kubetune_trainer.data.tokenize import tokenize

    ds = job.spec.dataset
    n, it = 0, iter(records)
    while batch := list(islice(it, BATCH)):
        if kind in ("sft", "text", "classification"):
            n += tokenize(kind, batch, tokenizer, ds).truncated
            continue
        # preference/ranked: an example counts once if any of its answers is cut
        for rec in batch:
            answers = rec.get("responses") or [rec["chosen"], rec["rejected"]]
            pairs = [{"prompt": rec["prompt"], "completion": a} for a in answers]
            n += tokenize("sft", pairs, tokenizer, ds).truncated > 0
    return n


@click.command("prepare")
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--output", "root", type=click.Path(file_okay=False), default=None, metavar="ROOT",
              help="Artifact root, a local folder: the files go to "
                   "ROOT/<namespace>/<name>/prepared (default ./runs).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Deprecated: the prepared folder itself (use --output ROOT).")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field, e.g. --set dataset.badRows=skip.")  # fmt: skip
@click.option("--show", "show", type=click.IntRange(min=0), default=0, metavar="N",
              help="Print the first N training examples as the model sees them: template "
                   "applied, prompt (masked, no loss) and completion (trained) apart.")  # fmt: skip
@output_format
def command(
    job_file: str, root: str | None, out: str | None, overrides: tuple[str, ...], show: int,
    fmt: str,
) -> None:  # fmt: skip
    """Validate and prepare JOB_FILE's dataset; write train/validation JSONL."""
    from kubetune_trainer.data.prepare import prepare_to_files

    if out is not None:
        click.echo("kubetune: --out is deprecated: use --output ROOT", err=True)
    if root and scheme_of(root):
        raise click.BadParameter(f"{root}: prepare writes local files; give a folder",
                                 param_hint="--output")  # fmt: skip
    if show and fmt == "json":
        raise click.UsageError("--show prints text: not with -o json")
    job = job_from_file(job_file, list(overrides))
    try:
        # dataset://NAME[@vN]: the registered data, as a run reads it (dataset_registry.py)
        from kubetune_trainer.dataset_registry import resolve_job

        _, job = resolve_job(job, os.environ.get("KUBETUNE_OUTPUT_URI") or job.spec.output.uri)
        if out:
            folder = Path(out)
        else:  # namespace and name as single path segments under the root (storage/paths.py)
            from kubetune_trainer.storage.paths import run_location

            meta = job.metadata
            folder = Path(run_location(root or "runs", meta.namespace, meta.name)) / "prepared"
        data = prepare_to_files(job, folder)
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
        # chunks sized in the base's tokens, as training does
        data = prepare_to_files(job, folder, tokenizer)
    max_len = job.spec.dataset.max_seq_length
    truncated = None
    if tokenizer is not None:
        records = (r for p in (data.train_path, data.validation_path) for r in read_jsonl(p))
        truncated = count_truncated(data.kind, records, tokenizer, job)
    if fmt == "json":
        emit_json(summary(job, data, truncated, why))
        return
    s = data.stats
    click.echo(f"format: {data.format} -> {data.kind} records")
    click.echo(f"read: {s.read} rows; skipped (bad): {s.skipped}; filtered: {s.filtered}")
    click.echo(f"kept: {s.kept} examples (train {data.train_examples}, "
               f"validation {data.validation_examples})")  # fmt: skip
    for problem in s.problems:
        click.echo(f"  skipped {problem}")
    for rule, n in sorted(s.filtered_by.items()):
        click.echo(f"  filtered {n} by {rule}")
    if s.duplicates:
        what = "removed" if job.spec.dataset.dedupe else "kept (dataset.dedupe: true removes them)"
        click.echo(f"duplicates: {s.duplicates} exact duplicate row(s), {what}")
    if s.validation_note:
        click.echo(f"warning: {s.validation_note}")
    if s.warned:
        click.echo(f"warnings: {s.warned} row(s) kept with a warning")
        for warning in s.warnings:
            click.echo(f"  warning {warning}")
    if truncated is None:
        click.echo(f"truncated: not counted: {why}")
    else:
        click.echo(f"truncated: {truncated} examples longer than maxSeqLength {max_len}")
    click.echo(f"fingerprint: {data.fingerprint}")
    click.echo(f"wrote: {data.train_path}, {data.validation_path}")
    if show:
        from kubetune_trainer.data.show import show_examples

        if tokenizer is None:
            click.echo(f"tokens not shown: {why}")
        ds = job.spec.dataset
        click.echo(show_examples(read_jsonl(data.train_path), show, data.kind, tokenizer, ds))


def summary(job: FineTuneJob, data: PreparedFiles, truncated: int | None, why: str) -> dict:
    """What the text summary says, as `prepare -o json` prints it (a stable shape)."""
    s = data.stats
    return {
        "format": data.format,
        "kind": data.kind,
        "read": s.read,
        "skipped": s.skipped,
        "filtered": s.filtered,
        "filtered_by": dict(s.filtered_by),
        "kept": s.kept,
        "train_examples": data.train_examples,
        "validation_examples": data.validation_examples,
        "problems": [str(p) for p in s.problems],
        "duplicates": s.duplicates,
        "duplicates_removed": bool(s.duplicates and job.spec.dataset.dedupe),
        "validation_note": s.validation_note or None,
        "warned": s.warned,
        "warnings": [str(w) for w in s.warnings],
        "truncated": truncated,
        "truncated_not_counted": None if truncated is not None else why,
        "max_seq_length": job.spec.dataset.max_seq_length,
        "fingerprint": data.fingerprint,
        "train_path": str(data.train_path),
        "validation_path": str(data.validation_path),
    }
