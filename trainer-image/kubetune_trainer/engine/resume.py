"""Resume: only this run's own checkpoints; fetch the newest verified one, and keep the
metrics history continuous.

Every checkpoint's kubetune_state.json records the run's identity: a hash per spec field
that changes what is trained (model, objective, adapter, quantization, dataset, training
hyperparameters; not logging, checkpoint cadence, evaluation, resources or the number of
steps), the data fingerprint and, on a cluster, the FineTuneJob's uid. runPolicy.resume
(or --no-resume) decides what a start does with the latest committed checkpoint:

  auto   resume it if the identity matches; refuse (exit 64, naming what differs) if the
         spec or data differ; a checkpoint of another FineTuneJob uid (the same name
         deleted and re-created) is set aside and the run starts fresh;
  force  resume it whatever it was trained on (a warning names the differences);
  never  start fresh; earlier checkpoints are set aside under superseded/, never deleted
         (on the first attempt only: a retry continues what the fresh start committed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from kubetune_api.constants import Env
from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import ConfigError

from .callbacks import STATE_FILE

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
SUPERSEDED = "superseded"

# Spec sections whose fields change what is trained; the excluded leaves do not (how
# often to log/evaluate/save, how many checkpoints to keep, for how long to train).
_SECTIONS = ("model", "objective", "adapter", "quantization", "dataset", "training")
_NOT_TRAINING = frozenset({
    "training.loggingSteps", "training.evalSteps", "training.saveSteps",
    "training.keepLastCheckpoints", "training.earlyStopping", "training.gradientCheckpointing",
    "training.maxSteps", "training.epochs", "dataset.streaming", "dataset.maxErrors",
})  # fmt: skip


class ResumeRefused(ConfigError):
    """The latest checkpoint belongs to another run (other spec or data). Permanent."""


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    if path in _NOT_TRAINING:
        return
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _leaves(v, f"{path}.{k}", out)
    else:
        out[path] = value


def identity(job: FineTuneJob, data_fingerprint: str) -> dict[str, Any]:
    """The run's identity as recorded in each checkpoint (hashes, no spec values)."""
    spec = job.to_manifest()["spec"]
    leaves: dict[str, Any] = {}
    for section in _SECTIONS:
        if section in spec:
            _leaves(spec[section], section, leaves)
    fields = {
        k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]
        for k, v in sorted(leaves.items())
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return {
        "spec_hash": "sha256:" + digest,
        "spec_fields": fields,
        "data_fingerprint": data_fingerprint,
        "job_uid": os.environ.get(Env.JOB_UID) or None,
    }


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's state and this run (empty: the same run).

    A checkpoint written before identities were recorded is compared on what it has."""
    out = []
    old = saved.get("spec_fields")
    if isinstance(old, dict) and saved.get("spec_hash") != current["spec_hash"]:
        new = current["spec_fields"]
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        out.append(
            "spec." + ", spec.".join(changed) + (" differ" if len(changed) > 1 else " differs")
        )
    fp = saved.get("data_fingerprint")
    if fp and fp != current["data_fingerprint"]:
        out.append(f"data fingerprint differs ({fp[:19]} in the checkpoint, "
                   f"{current['data_fingerprint'][:19]} now)")  # fmt: skip
    return out


def foreign_uid(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The uid of another FineTuneJob incarnation that wrote the checkpoint, if any."""
    old, new = saved.get("job_uid"), current.get("job_uid")
    return old if old and new and old != new else None


def saved_state(ckpts: Any, ref: Any) -> dict[str, Any]:
    """A committed checkpoint's kubetune_state.json, read from the store (a few KB: the
    decision comes before anything big is fetched or loaded)."""
    from kubetune_trainer.storage.base import join_key

    try:
        data = json.loads(ckpts.store.get_bytes(join_key(ref.key, STATE_FILE)))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def decide(ckpts: Any, current: dict[str, Any], policy: str, rank: int, say: Any) -> bool:
    """Whether to resume from the latest committed checkpoint. Rank 0 sets aside what a
    fresh start must not resume; ResumeRefused when the checkpoint is another run's."""
    latest = ckpts.latest()
    if latest is None:
        return False
    where = ckpts.store.uri(ckpts.prefix)
    if policy == "never" and int(os.environ.get(Env.ATTEMPT, "1")) > 1:
        policy = "auto"  # a retry of a fresh start resumes what that start committed
    if policy == "never":
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        why = "a fresh start was asked for (--no-resume / runPolicy.resume: never)"
        _set_aside(ckpts, rank, say, stamp, why)
        return False
    saved = saved_state(ckpts, latest)
    diffs = differences(saved, current)
    other = foreign_uid(saved, current)
    if policy == "force":
        notes = diffs + ([f"it was written by FineTuneJob uid {other}"] if other else [])
        if notes:
            say(f"runPolicy.resume: force: resuming {latest.uri} although " + "; ".join(notes))
        return True
    if other:
        why = f"they belong to an earlier FineTuneJob of this name (uid {other})"
        _set_aside(ckpts, rank, say, other, why)
        return False
    if diffs:
        raise ResumeRefused(
            f"refusing to resume {latest.uri}: it was trained by another run: "
            + "; ".join(diffs)
            + ". To start fresh (earlier checkpoints are kept under "
            f"{ckpts.store.uri(SUPERSEDED)}/): `kubetune run --no-resume` or "
            "runPolicy.resume: never; to keep both runs: give this job a new name; to "
            f"continue from it anyway: runPolicy.resume: force (checkpoints under {where})"
        )
    return True


def _set_aside(ckpts: Any, rank: int, say: Any, tag: str, why: str) -> None:
    dest = f"{SUPERSEDED}/{tag}/{ckpts.prefix}"
    if rank == 0:  # only the writer rank touches the store
        say(f"not resuming the checkpoints under {ckpts.store.uri(ckpts.prefix)}: {why}; "
            f"moving them to {ckpts.store.uri(dest)}")  # fmt: skip
        ckpts.set_aside(dest)


def find(ckpts: Any, staging: Path, rank: int) -> tuple[Any, Path] | None:
    """(ref, local folder) of the newest checkpoint that verifies; torn ones are skipped."""
    got = ckpts.latest_verified(staging / f"resume-rank{rank}")
    if got is None:
        return None
    ref, path = got
    # The Trainer reads the step from trainer_state.json; the folder name is cosmetic.
    final = staging / f"resume-{ref.name}-rank{rank}"
    path.rename(final)
    return ref, final


def engine_state(folder: Path) -> dict[str, Any]:
    f = folder / STATE_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def restore_metrics(store: Any, report_dir: Path, upto_step: int) -> list[dict[str, Any]]:
    """Bring back metrics.jsonl rows up to the resumed step (later ones are replayed);
    returns the rows kept."""
    report_dir.mkdir(parents=True, exist_ok=True)
    if upto_step <= 0:
        return []
    try:
        data = store.get_bytes(f"report/{METRICS}").decode()
    except FileNotFoundError:
        return []
    rows = []
    for line in data.splitlines():
        try:
            rows.append((line, json.loads(line)))
        except ValueError:  # a torn line (uploaded while a row was being appended): skip it
            continue
    kept = [(line, row) for line, row in rows if row.get("step", 0) <= upto_step]
    (report_dir / METRICS).write_text("".join(line + "\n" for line, _ in kept))
    return [row for _, row in kept]


def upload_metrics(store: Any, report_dir: Path) -> None:
    f = report_dir / METRICS
    if f.is_file():
        store.put_file(f, f"report/{METRICS}")
