"""One FineTuneJob run as named phases over one `Run` object:

    start -> setup -> resume_from_checkpoint -> build -> train -> evaluate -> finish

Each phase is a function of the run; its comment says what it needs from the phases before
it, and the `Run` fields it fills are grouped under its name. evaluate and finish
(evaluation, adapter save and upload, report, registry) are in finish.py.

Rank 0 alone writes to the store (checkpoints, adapter, report); every rank trains. The
Trainer's output_dir is a local staging folder: each saved checkpoint is committed to
`<run>/checkpoints/step-N/` by CommitCallback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from transformers.trainer_callback import PrinterCallback

from kubetune_api.constants import Env
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import redact_spec
from kubetune_trainer.data.interrupt import preemptible
from kubetune_trainer.errors import PreemptedError
from kubetune_trainer.modeling.cache import cache_root
from kubetune_trainer.recipes.base import RecipeContext
from kubetune_trainer.records import PreparedDataset
from kubetune_trainer.reporting.local import SinkFanout, sinks_for
from kubetune_trainer.reporting.sinks import RunInfo

from . import finish
from . import resume as resume_mod
from .adapter import SavedAdapter
from .args import training_kwargs
from .callbacks import (
    CommitCallback,
    EpochSaveCallback,
    LogCallback,
    Preemption,
    PreemptionCallback,
    SkipIfTrained,
    TrainingDone,
    selection_callbacks,
)
from .eta import EtaCallback
from .memwatch import MemoryWatch, load_label
from .progress import Progress, ProgressCallback
from .setup import Loaded, load_all, offline_env

AFTER_TRAINING = (
    "after training: stopped; the last checkpoint is committed, the next attempt resumes "
    "there and evaluates"
)


@dataclass
class RunResult:
    run_uri: str
    adapter: SavedAdapter | None
    report_uri: str | None
    base_eval_loss: float | None
    tuned_eval_loss: float | None
    steps: int
    final_train_loss: float | None
    resumed_from: str | None
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """What the phases share, grouped by the phase that fills it (unset until then)."""

    # start
    job: FineTuneJob  # dataset://NAME pinned to its version (the registry's lineage names it)
    data_job: FineTuneJob  # reads the registered data, refused if it changed
    output: str  # the output root
    prefix: str  # <output>/<namespace>/<name>
    rank: int
    world: int
    say: Callable[[str], None]
    progress: Progress
    preemption: Preemption
    recipe: ModuleType
    store: Any
    ckpts: Any  # CheckpointStore
    staging: Path
    policy: str  # run_policy.resume, or "never"
    started: float
    sinks: SinkFanout = field(default_factory=lambda: SinkFanout([]))
    # setup
    loaded: Loaded = None  # type: ignore[assignment]
    identity: dict[str, Any] = field(default_factory=dict)
    resuming: bool = False
    # resume
    found: tuple[Any, Path] | None = None  # (checkpoint ref, local folder)
    prior: dict[str, Any] = field(default_factory=dict)  # the checkpoint's engine state
    restored: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows kept
    extra_state: dict[str, Any] = field(default_factory=dict)  # what every checkpoint carries
    # build
    lm_loss: bool = False
    logs: LogCallback = None  # type: ignore[assignment]
    commit: CommitCallback = None  # type: ignore[assignment]
    eta: EtaCallback = None  # type: ignore[assignment]
    watch: MemoryWatch | None = None  # memory at each operation; reacts above 80%
    built: Any = None  # the recipe's BuiltTrainer
    # train
    base_eval: float | None = None
    base_metrics: dict[str, float] = field(default_factory=dict)
    trained: bool = True  # False: the checkpoint had reached the last step already
    train_seconds: float = 0.0
    # evaluate
    tuned_eval: float | None = None
    evaluation: Any = None
    # finish
    saved: SavedAdapter | None = None
    report_uri: str | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def trainer(self) -> Any:
        return self.built.trainer

    @property
    def report_dir(self) -> Path:
        return self.staging / "report"

    @property
    def resumed_from(self) -> str | None:
        return self.found[0].uri if self.found else None


def output_root(job: FineTuneJob, override: str | None = None) -> str:
    return override or os.environ.get(Env.OUTPUT_URI) or job.spec.output.uri


def run_job(
    job: FineTuneJob,
    *,
    output: str | None = None,
    resume: bool = True,
    prepared: PreparedDataset | None = None,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
    loaded: Loaded | None = None,
    extra_callbacks: list[Any] | None = None,
) -> RunResult:
    """`loaded`: load_all(job, prepared) already run for this same job; trained, not reloaded.
    `extra_callbacks`: more Trainer callbacks (after the engine's own), e.g. a notebook's."""
    run = start(job, output, resume, progress or Progress(), say)
    try:
        setup(run, prepared, loaded)
        resume_from_checkpoint(run)
        build(run, extra_callbacks or [])
        train(run)
        # Over a large validation split this takes minutes: a SIGTERM (preemption) stops it
        # at once; the last step's checkpoint is committed (settled in `finally`), and the
        # next attempt resumes there, trains no step more and evaluates.
        with preemptible("the evaluation after training", AFTER_TRAINING):
            finish.evaluate(run)
        finish.finish(run)
        run.progress.phase = "done"
        return RunResult(
            run.prefix,
            run.saved,
            run.report_uri,
            run.base_eval,
            run.tuned_eval,
            run.trainer.state.global_step,
            run.progress.loss,
            run.resumed_from,
            run.report,
        )
    finally:
        if run.commit is not None:
            run.commit.settle()  # a checkpoint handed over just before a failure still commits
            run.progress.checkpoint = run.commit.last_uri or run.progress.checkpoint
        if run.watch is not None:
            run.watch.stop()
        run.sinks.close()
        run.preemption.uninstall()
        if run.rank == 0 or run.world == 1:
            shutil.rmtree(run.staging, ignore_errors=True)


def start(
    job: FineTuneJob,
    output: str | None,
    resume: bool,
    p: Progress,
    say: Callable[[str], None],
) -> Run:
    """Needs nothing. SIGTERM handling, the recipe and a writable store, before any loading:
    an unknown objective or an unwritable output must fail before hours of training."""
    from kubetune_trainer.dataset_registry import resolve_job
    from kubetune_trainer.recipes import load_recipe
    from kubetune_trainer.storage import open_store
    from kubetune_trainer.storage.checkpoints import CheckpointStore
    from kubetune_trainer.storage.paths import run_location

    spec, meta = job.spec, job.metadata
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    p.rank = rank
    preemption = Preemption()
    preemption.install()  # from here SIGTERM means "stop cleanly", even during setup
    started = time.monotonic()
    offline_env(job)
    say(
        f"kubetune: {meta.namespace}/{meta.name}, objective {spec.objective}, resolved spec:\n"
        # Pod logs are widely readable: URLs are printed without user:password@.
        + yaml.safe_dump(redact_spec(job.to_manifest()["spec"]), sort_keys=False).rstrip()
    )
    recipe = load_recipe(spec.objective)  # a missing recipe fails before any loading
    root = output_root(job, output)
    # Namespace and name are single segments and '/' is no output root (storage/paths.py).
    prefix = run_location(root, meta.namespace, meta.name)
    pinned, data_job = resolve_job(job, root)  # dataset://NAME[@vN] (dataset_registry.py)
    store = open_store(prefix, endpoint_url=spec.output.s3_endpoint)
    if rank == 0:
        store.check_writable()
    p.store = store
    return Run(
        pinned, data_job, root, prefix, rank, world, say, p, preemption, recipe, store,
        CheckpointStore(store), _staging_dir(pinned, world),
        # Resume only this run's own checkpoints, decided before any weights load.
        spec.run_policy.resume if resume else "never",
        started,
    )  # fmt: skip


def setup(run: Run, prepared: PreparedDataset | None, loaded: Loaded | None) -> None:
    """Needs start's store and checkpoints. Data, model and adapter (unless the caller
    loaded them), and the resume decision taken between data and weights (resume.py)."""

    def decide_resume(data: PreparedDataset) -> None:
        phase, run.progress.phase = run.progress.phase, "resume"
        run.identity = resume_mod.identity(run.job, data.fingerprint)
        run.resuming = resume_mod.decide(run.ckpts, run.identity, run.policy, run.rank, run.say)
        run.progress.phase = phase

    if loaded is None:
        loaded = load_all(run.data_job, prepared, run.say, before_model=decide_resume)
    else:
        decide_resume(loaded.prepared)
    run.loaded = loaded
    if run.preemption.requested:
        raise PreemptedError(
            f"SIGTERM during {run.progress.phase}, before training: nothing to save"
        )


def resume_from_checkpoint(run: Run) -> None:
    """Needs setup's decision. The checkpoint to resume from, its engine state and metrics
    rows; then the sinks, started with what they kept across attempts (the MLflow run id)."""
    p, prep = run.progress, run.loaded.prepared
    p.phase = "resume"
    run.found = resume_mod.find(run.ckpts, run.staging, run.rank) if run.resuming else None
    run.prior = resume_mod.engine_state(run.found[1]) if run.found else {}
    if run.found:
        run.say(f"resuming from {run.found[0].uri} (step {run.found[0].step})")
        p.checkpoint = run.found[0].uri  # a failure before the next commit names this one
    if run.rank == 0:
        upto = run.found[0].step if run.found else 0
        run.restored = resume_mod.restore_metrics(run.store, run.report_dir, upto)
    meta = run.job.metadata
    info = RunInfo(
        meta.namespace, meta.name, int(os.environ.get(Env.ATTEMPT, "1")), run.prefix, run.rank,
        run.world, run.resumed_from, state=dict(run.prior.get("sink_state") or {}),
    )  # fmt: skip
    run.sinks = SinkFanout(sinks_for(run.job, info, run.report_dir) if run.rank == 0 else [])
    params = {
        "spec": redact_spec(run.job.to_manifest()["spec"]),  # MLflow params, reports
        "precision": run.loaded.precision,
        "data_fingerprint": prep.fingerprint,
        "trainable_params": run.loaded.trainable,
        "total_params": run.loaded.total,
    }
    run.sinks.on_start(info, params)
    run.extra_state = {
        **run.identity,  # spec_hash, spec_fields, data_fingerprint, job_uid
        "data_fingerprint": prep.fingerprint,
        "attempt": info.attempt,
        "sink_state": info.state,  # filled by on_start; every checkpoint carries it
    }


def build(run: Run, extra_callbacks: list[Any]) -> None:
    """Needs the loaded model and data, the sinks and the checkpoint state. The engine's
    callbacks and the recipe's Trainer."""
    job, loaded, prep = run.job, run.loaded, run.loaded.prepared
    run.lm_loss = finish.language_model_loss(job)
    run.logs = LogCallback(run.sinks, perplexity=run.lm_loss)
    run.commit = CommitCallback(
        run.ckpts,
        run.staging,
        job.spec.training.keep_last_checkpoints,
        run.sinks,
        run.extra_state,
        after=lambda: resume_mod.upload_metrics(run.store, run.report_dir),
    )
    kwargs = training_kwargs(
        job, run.staging, loaded.precision, loaded.system.device == "cuda", bool(prep.validation)
    )
    # First: a resumed checkpoint already at the planned last step ends train() before
    # the Trainer takes one more step (it only checks max_steps after a step).
    callbacks: list[Any] = [SkipIfTrained()]
    # evaluation.selectBy's metric joins each evaluation before LogCallback records it.
    callbacks += selection_callbacks(job, loaded.tokenizer, prep)
    callbacks += [run.logs, run.commit, PreemptionCallback(run.preemption)]
    callbacks.append(ProgressCallback(run.progress))
    export = run.sinks.on_gauges  # a failing sink is logged, never ends the run
    run.eta = EtaCallback(job, loaded.model, loaded.system.device, run.say, export, run.restored)
    run.watch = MemoryWatch(job, loaded.model, loaded.system.device, run.say, export)
    run.watch.mark(load_label(job))
    callbacks += [run.eta, run.watch]
    if kwargs["save_strategy"] == "steps":
        callbacks.append(EpochSaveCallback())
    callbacks.extend(extra_callbacks)
    ctx = RecipeContext(
        job, loaded.model, loaded.tokenizer, prep, kwargs, callbacks, loaded.precision
    )
    ctx.data_store = run.store  # the tokenized-data cache lives in the run's store
    run.built = run.recipe.build_trainer(ctx)
    run.trainer.remove_callback(PrinterCallback)  # the console sink prints rows instead
    if run.built.truncation is not None:
        run.say(run.built.truncation.summary())
        prep.stats.truncated = run.built.truncation.train + run.built.truncation.validation


def train(run: Run) -> None:
    """Needs build's Trainer and the resumed checkpoint. Training; a SIGTERM ends here once
    its checkpoint is committed. The base is evaluated after training (finish.evaluate,
    adapter disabled: the same frozen base), never before: over a large validation split
    that pass would delay the first step by minutes, and an evaluate() before train()
    marks the model as prepared, so accelerate would skip the DDP/DeepSpeed wrapper."""
    p, trainer = run.progress, run.trainer
    p.phase = "training"
    t_train = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=str(run.found[1]) if run.found else None)
    except TrainingDone as done:
        # The earlier attempt committed its last step and died before the adapter: the
        # checkpoint's weights and state are loaded; what follows is what it left undone.
        run.trained = False
        trainer.is_in_train = False
        run.say(
            f"checkpoint step {done.step} already reached the planned {done.total} steps: "
            "no training, going on to evaluation, adapter and report"
        )
    run.train_seconds = time.monotonic() - t_train
    p.step = trainer.state.global_step
    train_losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    p.loss = train_losses[-1] if train_losses else None
    if run.preemption.requested:
        # Only the writer rank knows the URI; the others name who committed it.
        where = run.commit.last_uri or "written by rank 0"
        raise PreemptedError(
            f"SIGTERM at step {trainer.state.global_step}: checkpoint {where} "
            "committed; the next attempt resumes from it"
        )


def _staging_dir(job: FineTuneJob, world: int) -> Path:
    root = cache_root() / "staging"
    root.mkdir(parents=True, exist_ok=True)
    if world == 1:
        return Path(tempfile.mkdtemp(prefix=f"{job.metadata.name}-", dir=root))
    # Ranks of one host share the Trainer's output_dir, so its name must not be random.
    from kubetune_trainer.storage.paths import safe_join

    attempt = os.environ.get(Env.ATTEMPT, "1")
    d = safe_join(root, f"{job.metadata.namespace}-{job.metadata.name}-{attempt}", what="staging")
    d.mkdir(parents=True, exist_ok=True)
    return d
