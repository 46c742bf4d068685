"""One FineTuneJob run: setup -> resume -> base eval -> train -> eval -> adapter -> report.

Reads top to bottom. Rank 0 alone writes to the store (checkpoints, adapter, report);
every rank trains. The Trainer's output_dir is a local staging folder: each saved
checkpoint is committed to `<run>/checkpoints/step-N/` by CommitCallback.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers.trainer_callback import PrinterCallback

from kubetune_api.constants import Env
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import redact_spec
from kubetune_trainer.errors import PreemptedError
from kubetune_trainer.modeling.cache import cache_root
from kubetune_trainer.records import PreparedDataset
from kubetune_trainer.sinks import RunInfo

from . import resume as resume_mod
from .adapter import SavedAdapter, model_card, portable_base, save_adapter, upload_adapter
from .args import training_kwargs
from .callbacks import (
    CommitCallback,
    EpochSaveCallback,
    LogCallback,
    Preemption,
    PreemptionCallback,
    SkipIfTrained,
    TrainingDone,
    best_step,
    objective_metrics,
    selection_callbacks,
)
from .progress import Progress, ProgressCallback
from .report import objective_options, stop_reason, write_report
from .setup import Loaded, load_all, offline_env
from .sinks import SinkFanout, sinks_for

log = logging.getLogger(__name__)


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
    from kubetune_trainer.recipes import load_recipe
    from kubetune_trainer.recipes.base import RecipeContext
    from kubetune_trainer.storage import open_store
    from kubetune_trainer.storage.checkpoints import CheckpointStore
    from kubetune_trainer.storage.paths import run_location

    p = progress or Progress()
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

    # The store first: an unwritable output must fail before hours of training.
    # Namespace and name are single segments and '/' is no output root (storage/paths.py).
    prefix = run_location(output_root(job, output), meta.namespace, meta.name)
    # dataset://NAME[@vN]: `job` pins the version (the registry's lineage names it) and
    # `data_job` reads the registered data, refused if it changed (dataset_registry.py).
    from kubetune_trainer.dataset_registry import resolve_job

    job, data_job = resolve_job(job, output_root(job, output))
    store = open_store(prefix, endpoint_url=spec.output.s3_endpoint)
    if rank == 0:
        store.check_writable()
    p.store = store
    ckpts = CheckpointStore(store)
    staging = _staging_dir(job, world)
    sinks = SinkFanout([])
    # Resume only this run's own checkpoints, decided before any weights load (resume.py).
    policy = spec.run_policy.resume if resume else "never"
    identity: dict[str, Any] = {}
    resuming = False

    def decide_resume(data: PreparedDataset) -> None:
        nonlocal identity, resuming
        phase, p.phase = p.phase, "resume"
        identity = resume_mod.identity(job, data.fingerprint)
        resuming = resume_mod.decide(ckpts, identity, policy, rank, say)
        p.phase = phase

    try:
        if loaded is None:
            loaded = load_all(data_job, prepared, say, before_model=decide_resume)
        else:
            decide_resume(loaded.prepared)
        prep = loaded.prepared
        _stop_if_preempted(preemption, p)

        p.phase = "resume"
        found = resume_mod.find(ckpts, staging, rank) if resuming else None
        prior = resume_mod.engine_state(found[1]) if found else {}
        if found:
            say(f"resuming from {found[0].uri} (step {found[0].step})")
            p.checkpoint = found[0].uri  # a failure before the next commit names this one
        report_dir = staging / "report"
        restored: list[dict[str, Any]] = []
        if rank == 0:
            restored = resume_mod.restore_metrics(store, report_dir, found[0].step if found else 0)

        run = RunInfo(
            meta.namespace,
            meta.name,
            int(os.environ.get(Env.ATTEMPT, "1")),
            prefix,
            rank,
            world,
            found[0].uri if found else None,
            # What sinks keep across attempts (the MLflow run id), from the checkpoint.
            state=dict(prior.get("sink_state") or {}),
        )
        sinks = SinkFanout(sinks_for(job, run, report_dir) if rank == 0 else [])
        params = {
            "spec": redact_spec(job.to_manifest()["spec"]),  # MLflow params, reports
            "precision": loaded.precision,
            "data_fingerprint": prep.fingerprint,
            "trainable_params": loaded.trainable,
            "total_params": loaded.total,
        }
        sinks.on_start(run, params)
        extra_state = {
            **identity,  # spec_hash, spec_fields, data_fingerprint, job_uid
            "data_fingerprint": prep.fingerprint,
            "attempt": run.attempt,
            "base_eval_loss": prior.get("base_eval_loss"),
            "sink_state": run.state,  # filled by on_start; every checkpoint carries it
        }
        lm_loss = language_model_loss(job)
        logs = LogCallback(sinks, perplexity=lm_loss)
        commit = CommitCallback(
            ckpts,
            staging,
            spec.training.keep_last_checkpoints,
            sinks,
            extra_state,
            after=lambda: resume_mod.upload_metrics(store, report_dir),
        )
        kwargs = training_kwargs(
            job, staging, loaded.precision, loaded.system.device == "cuda", bool(prep.validation)
        )
        # First: a resumed checkpoint already at the planned last step ends train() before
        # the Trainer takes one more step (it only checks max_steps after a step).
        callbacks: list[Any] = [SkipIfTrained()]
        # evaluation.selectBy's metric joins each evaluation before LogCallback records it.
        callbacks += selection_callbacks(job, loaded.tokenizer, prep)
        callbacks += [logs, commit, PreemptionCallback(preemption)]
        callbacks.append(ProgressCallback(p, commit))  # after commit: sees its last URI
        if kwargs["save_strategy"] == "steps":
            callbacks.append(EpochSaveCallback())
        callbacks.extend(extra_callbacks or [])
        ctx = RecipeContext(
            job, loaded.model, loaded.tokenizer, prep, kwargs, callbacks, loaded.precision
        )
        ctx.data_store = store  # the tokenized-data cache lives in the run's store
        built = recipe.build_trainer(ctx)
        trainer = built.trainer
        trainer.remove_callback(PrinterCallback)  # the console sink prints rows instead
        if built.truncation is not None:
            say(built.truncation.summary())
            prep.stats.truncated = built.truncation.train + built.truncation.validation

        p.phase = "base-evaluation"
        base_eval = prior.get("base_eval_loss")
        # The base's objective metrics (ranking: base_ordering_accuracy), kept like its loss.
        base_metrics: dict[str, float] = dict(prior.get("base_metrics") or {})
        # An evaluate() before train() marks the model as prepared, and accelerate then
        # skips the DDP/DeepSpeed wrapper: ranks would train apart. Distributed runs
        # evaluate the base after training (adapter disabled: the same frozen base).
        base_first = world == 1 and spec.distributed.deepspeed == "none"
        if base_first and base_eval is None and built.eval_examples:
            base_eval, base_metrics = _evaluate_base(trainer, loaded.model, say)
        extra_state["base_eval_loss"] = base_eval
        extra_state["base_metrics"] = base_metrics

        p.phase = "training"
        t_train = time.monotonic()
        trained = True
        try:
            trainer.train(resume_from_checkpoint=str(found[1]) if found else None)
        except TrainingDone as done:
            # The earlier attempt committed its last step and died before the adapter: the
            # checkpoint's weights and state are loaded; what follows is what it left undone.
            trained = False
            trainer.is_in_train = False
            say(
                f"checkpoint step {done.step} already reached the planned {done.total} steps: "
                "no training, going on to evaluation, adapter and report"
            )
        train_seconds = time.monotonic() - t_train
        p.step = trainer.state.global_step
        p.checkpoint = commit.last_uri or p.checkpoint
        history = [r for r in trainer.state.log_history if "loss" in r or "eval_loss" in r]
        train_losses = [r["loss"] for r in history if "loss" in r]
        p.loss = train_losses[-1] if train_losses else None
        if preemption.requested:
            # Only the writer rank knows the URI; the others name who committed it.
            where = commit.last_uri or "written by rank 0"
            raise PreemptedError(
                f"SIGTERM at step {trainer.state.global_step}: checkpoint {where} "
                "committed; the next attempt resumes from it"
            )

        p.phase = "evaluation"
        if base_eval is None and built.eval_examples:
            base_eval, base_metrics = _evaluate_base(trainer, loaded.model, say)
        if not trained and any("eval_loss" in r and r.get("step") == p.step for r in restored):
            logs.mute_eval_at = p.step  # the restored metrics hold the final eval row already
        tuned_eval = None
        if built.eval_examples:
            # The Trainer often evaluated this very model at the last step: no second pass.
            tuned_eval = _last_step_eval(trainer, p.step)
            if tuned_eval is None:
                tuned_eval = trainer.evaluate()["eval_loss"]
        if tuned_eval is not None:
            say(f"tuned eval loss: {tuned_eval:.4f}")
        from kubetune_trainer.distributed import zero3_enabled

        evaluation = None
        if zero3_enabled() and spec.evaluation.enabled:
            # Generating on rank 0 alone would start ZeRO-3 parameter gathers the other
            # ranks never join (a hang, or mismatched collectives). Evaluate the adapter.
            say("post-training generation skipped under ZeRO-3: run `kubetune eval` on the adapter")
        elif rank == 0:
            evaluation = _post_train_evaluation(job, loaded, prep, say)

        p.phase = "saving"
        # Now with the final evaluation's row (its eval_* metrics are the tuned model's).
        history = [r for r in trainer.state.log_history if "loss" in r or "eval_loss" in r]
        results: dict[str, Any] = {
            "steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0), 3),
            "base_eval_loss": base_eval,
            "tuned_eval_loss": tuned_eval,
        }
        if lm_loss:  # exp(loss) is a perplexity only for a token-level language-model loss
            results.update(base_perplexity=_ppl(base_eval), tuned_perplexity=_ppl(tuned_eval))
        mean_loss = [r["train_loss"] for r in trainer.state.log_history if "train_loss" in r]
        results.update(
            planned_steps=trainer.state.max_steps,
            stop_reason=stop_reason(trainer.state, job),
            final_train_loss=p.loss,
            # The Trainer's mean over the run: the only train loss when loggingSteps > steps.
            mean_train_loss=mean_loss[-1] if mean_loss else None,
            train_examples=built.train_examples,
            eval_examples=built.eval_examples,
            # Every attempt's rows (metrics.jsonl is restored on resume), not this one's only.
            tokens_per_second=_mean_tps(_metrics_rows(report_dir) or logs.history),
            best_checkpoint=_best_uri(ckpts, trainer.state),
            precision=loaded.precision,
            data_fingerprint=prep.fingerprint,
        )
        results.update(_final_metrics(history, base_metrics, evaluation, prep.kind))
        saved = report_uri = None
        report: dict[str, Any] = {}
        from kubetune_trainer.distributed import adapter_state_dict

        gathered = adapter_state_dict(loaded.model)  # ZeRO-3: every rank gathers, rank 0 saves
        if rank == 0:
            card = model_card(job, loaded.base.display, results)
            files = save_adapter(
                loaded.model, loaded.tokenizer, staging / "adapter", card, gathered,
                base_ref=portable_base(spec),
            )  # fmt: skip
            saved = upload_adapter(store, staging / "adapter", files)
            say(
                f"adapter: {saved.uri} ({saved.size:,} bytes, sha256 {saved.sha256}); "
                f"every file read back from the store and verified:\n{saved.table()}"
            )
            report = _report(job, loaded, results, saved, found, evaluation, built.truncation)
            report["training_seconds"] = round(train_seconds, 2)
            report["total_seconds"] = round(time.monotonic() - started, 2)
            for path in write_report(report, history, report_dir):
                store.put_file(path, f"report/{path.name}")
            resume_mod.upload_metrics(store, report_dir)
            report_uri = store.uri("report")
            from kubetune_trainer.evaluation.report import evaluation_summary

            summary = {**results, **evaluation_summary(evaluation), "adapter_uri": saved.uri}
            sinks.on_end(summary, str(report_dir))
            # After the sinks: the registry record reuses the MLflow version they registered.
            from kubetune_trainer.registry import record_success

            entry = record_success(job, report, prefix, output_root(job, output))
            if entry is not None:
                say(f"registry: {entry['name']} v{entry['version']}")
        p.phase = "done"
        return RunResult(
            prefix,
            saved,
            report_uri,
            base_eval,
            tuned_eval,
            trainer.state.global_step,
            p.loss,
            found[0].uri if found else None,
            report,
        )
    finally:
        sinks.close()
        preemption.uninstall()
        if rank == 0 or world == 1:
            shutil.rmtree(staging, ignore_errors=True)


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


def _last_step_eval(trainer: Any, step: int) -> float | None:
    """eval_loss logged at `step` for the final weights (not when the best is reloaded)."""
    if trainer.args.load_best_model_at_end:
        return None
    rows = [r for r in trainer.state.log_history if "eval_loss" in r and r.get("step") == step]
    return float(rows[-1]["eval_loss"]) if rows else None


def _best_uri(ckpts: Any, state: Any) -> str | None:
    """The store URI of the best committed checkpoint by eval loss (the Trainer only knows
    its staging path and step)."""
    step = best_step(state)
    if step is None:
        return None
    return next((r.uri for r in ckpts.list_committed() if r.step == step), None)


def _evaluate_base(
    trainer: Any, model: Any, say: Callable[[str], None]
) -> tuple[float, dict[str, float]]:
    """(eval loss, the objective's other metrics, e.g. base_ordering_accuracy) of the base."""
    with model.disable_adapter():  # the frozen base, same data, same code
        metrics = trainer.evaluate(metric_key_prefix="base")
    loss = float(metrics["base_loss"])
    say(f"base eval loss (adapter disabled): {loss:.4f}")
    # evaluate() names them base_*. TRL's DPO adds eval_rewards/* there too: with the
    # adapter disabled the policy is its own reference, so those are zero by construction.
    named = objective_metrics({f"eval_{k[5:]}": v for k, v in metrics.items() if k[:5] == "base_"})
    return loss, {f"base_{k[5:]}": v for k, v in named.items()}


def language_model_loss(job: FineTuneJob) -> bool:
    """Whether the eval loss is a token-level language-model cross-entropy (SFT of a causal
    or masked LM), the only loss whose exp() is a perplexity. DPO, ranking and
    classification losses are not."""
    return job.spec.objective == "sft" and job.spec.model.task in ("causal_lm", "masked_lm")


def _metrics_rows(report_dir: Path) -> list[dict[str, Any]]:
    import json

    f = report_dir / resume_mod.METRICS
    if not f.is_file():
        return []
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]


# The held-out accuracy of each preference kind, in results as base_<name>/tuned_<name>.
_HELD_OUT = {"preference": ("preference_accuracy",), "ranked": ("ordering_accuracy",)}


def _final_metrics(
    history: list[dict[str, Any]],
    base_metrics: dict[str, float],
    evaluation: Any,
    kind: str,
) -> dict[str, float]:
    """The objective's final figures for results: the last logged value of every eval_*/
    rewards/* metric (eval_ordering_accuracy, eval_rewards/accuracies...), the base's
    (base_ordering_accuracy...), and the held-out base and tuned preference/ordering
    accuracy: the Trainer's own when it measures one (ranking), else the evaluation
    hook's (DPO)."""
    out: dict[str, float] = {}
    for row in history:
        out.update(objective_metrics(row))
    out.update(base_metrics)
    for name in _HELD_OUT.get(kind, ()):
        base, tuned = base_metrics.get(f"base_{name}"), out.get(f"eval_{name}")
        if (base is None or tuned is None) and isinstance(evaluation, dict):
            base = (evaluation.get("base") or {}).get("metrics", {}).get(name)
            tuned = (evaluation.get("tuned") or {}).get("metrics", {}).get(name)
        if base is not None and tuned is not None:
            out[f"base_{name}"], out[f"tuned_{name}"] = base, tuned
    return out


def _stop_if_preempted(preemption: Preemption, p: Progress) -> None:
    if preemption.requested:
        raise PreemptedError(f"SIGTERM during {p.phase}, before training: nothing to save")


def _ppl(loss: float | None) -> float | None:
    import math

    return None if loss is None else (math.exp(loss) if loss < 50 else float("inf"))


def _mean_tps(rows: list[dict[str, Any]]) -> float | None:
    tps = [r["tokens_per_second"] for r in rows if "tokens_per_second" in r]
    return sum(tps) / len(tps) if tps else None


def _post_train_evaluation(job: FineTuneJob, loaded: Any, prep: Any, say: Any) -> Any:
    """The evaluation package's generation/format metrics, when it provides the hook."""
    if not job.spec.evaluation.enabled or not prep.validation or prep.stats.validation_note:
        return None
    if job.spec.model.task != "causal_lm":
        # Generation metrics need a causal LM; an encoder's evaluation is its eval loss.
        say(f"post-training generation skipped: model.task {job.spec.model.task} (eval loss only)")
        return None
    try:
        from kubetune_trainer.evaluation import after_training  # type: ignore[attr-defined]
    except ImportError:
        return None
    say("post-training evaluation (generation, format compliance)...")
    return after_training(job, loaded.model, loaded.tokenizer, prep, say=say)


def _report(
    job: FineTuneJob,
    loaded: Any,
    results: dict[str, Any],
    saved: SavedAdapter,
    found: Any,
    evaluation: Any,
    truncation: Any,
) -> dict[str, Any]:
    t, a = job.spec.training, job.spec.adapter
    return {
        "status": "succeeded",
        "job": {"namespace": job.metadata.namespace, "name": job.metadata.name},
        "base_model": loaded.base.display,
        "objective": job.spec.objective,
        "results": results,
        "hyperparameters": {
            "lora_r": a.r,
            "lora_alpha": a.alpha,
            "lora_dropout": a.dropout,
            "target_modules": a.target_modules,
            "quantization": job.spec.quantization.mode,
            "precision": loaded.precision,
            "learning_rate": t.learning_rate,
            "scheduler": t.scheduler,
            "epochs": t.epochs,
            "max_steps": t.max_steps,
            "logging_steps": t.logging_steps,
            "micro_batch_size": t.micro_batch_size,
            "gradient_accumulation": t.gradient_accumulation,
            "seed": t.seed,
            "max_seq_length": job.spec.dataset.max_seq_length,
            "gradient_checkpointing": loaded.memory.gradient_checkpointing,
            **objective_options(job),  # dpo_beta, dpo_loss_type, ranking_margin...
        },
        "parameters": {"trainable": loaded.trainable, "total": loaded.total},
        "system": loaded.system.as_dict(),
        "system_summary": loaded.system.summary(),
        "preflight": loaded.memory.as_dict(),
        "preflight_summary": loaded.memory.table(),
        "data": {
            "format": loaded.prepared.format,
            "kind": loaded.prepared.kind,
            "fingerprint": loaded.prepared.fingerprint,
            "train_examples": results.get("train_examples"),
            "validation_examples": results.get("eval_examples"),
            # Why there is no base/tuned comparison (fewer than validation.minExamples).
            "validation_note": loaded.prepared.stats.validation_note,
            # Examples longer than maxSeqLength per split, and how they were cut.
            "truncated": truncation.as_dict() if truncation is not None else None,
        },
        "adapter": saved.as_dict(),
        "resumed_from": found[0].uri if found else None,
        "evaluation": evaluation,
    }
