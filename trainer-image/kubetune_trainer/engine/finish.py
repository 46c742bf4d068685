"""The run's last two phases (run.py): evaluate the tuned model (and the base when it could
not go first), then finish: results, adapter save and upload, report, sinks' end, registry.

Rank 0 alone saves and reports; under ZeRO-3 every rank gathers the adapter first.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.recipes.hyperparameters import objective_options
from kubetune_trainer.reporting.report import stop_reason, write_report

from . import resume as resume_mod
from .adapter import model_card, portable_base, save_adapter, upload_adapter
from .callbacks import best_step, objective_metrics
from .eta import measured_tps
from .memwatch import technique_savings

if TYPE_CHECKING:
    from .run import Run


def evaluate(run: Run) -> None:
    """Needs train's Trainer, the base's figures and the restored metrics. The base (when
    it could not go before training), the tuned eval loss, and the post-training
    generation evaluation on rank 0."""
    p, trainer, say = run.progress, run.trainer, run.say
    p.phase = "evaluation"
    if run.base_eval is None and run.built.eval_examples:
        say(f"evaluating the base (adapter disabled) on {run.built.eval_examples:,} "
            "validation examples...")  # fmt: skip
        run.base_eval, run.base_metrics = evaluate_base(run)
    final_eval_restored = any("eval_loss" in r and r.get("step") == p.step for r in run.restored)
    if not run.trained and final_eval_restored:
        run.logs.mute_eval_at = p.step  # the restored metrics hold the final eval row already
    if run.built.eval_examples:
        # The Trainer often evaluated this very model at the last step: no second pass.
        run.tuned_eval = _last_step_eval(trainer, p.step)
        if run.tuned_eval is None:
            run.tuned_eval = trainer.evaluate()["eval_loss"]
    if run.tuned_eval is not None:
        say(f"tuned eval loss: {run.tuned_eval:.4f}")
    from kubetune_trainer.distributed import zero3_enabled

    if zero3_enabled() and run.job.spec.evaluation.enabled:
        # Generating on rank 0 alone would start ZeRO-3 parameter gathers the other
        # ranks never join (a hang, or mismatched collectives). Evaluate the adapter.
        say("post-training generation skipped under ZeRO-3: run `kubetune eval` on the adapter")
    elif run.rank == 0:
        run.evaluation = _post_train_evaluation(run.job, run.loaded, run.loaded.prepared, say)


def finish(run: Run) -> None:
    """Needs evaluate's figures. Results, then on rank 0 the adapter (saved, uploaded and
    read back), the report, the sinks' end and the registry record."""
    from kubetune_trainer.distributed import adapter_state_dict

    run.progress.phase = "saving"
    # Now with the final evaluation's row (its eval_* metrics are the tuned model's).
    history = [r for r in run.trainer.state.log_history if "loss" in r or "eval_loss" in r]
    results = _results(run, history)
    gathered = adapter_state_dict(run.loaded.model)  # ZeRO-3: every rank gathers, rank 0 saves
    if run.rank != 0:
        return
    spec, loaded, store, say = run.job.spec, run.loaded, run.store, run.say
    card = model_card(run.job, loaded.base.display, results)
    files = save_adapter(
        loaded.model, loaded.tokenizer, run.staging / "adapter", card, gathered,
        base_ref=portable_base(spec),
    )  # fmt: skip
    saved = run.saved = upload_adapter(store, run.staging / "adapter", files)
    if run.watch is not None:
        run.watch.mark("export (adapter saved)")
    say(
        f"adapter: {saved.uri} ({saved.size:,} bytes, sha256 {saved.sha256}); "
        f"every file read back from the store and verified:\n{saved.table()}"
    )
    report = run.report = _report(run, results)
    report["training_seconds"] = round(run.train_seconds, 2)
    report["eta"] = run.eta.summary(run.train_seconds)
    if run.watch is not None:
        checkpointing = run.watch.checkpointing
        report["memory"] = run.watch.summary(technique_savings(run.job, loaded, checkpointing))
    report["total_seconds"] = round(time.monotonic() - run.started, 2)
    for path in write_report(report, history, run.report_dir):
        store.put_file(path, f"report/{path.name}")
    resume_mod.upload_metrics(store, run.report_dir)
    run.report_uri = store.uri("report")
    from kubetune_trainer.evaluation.report import evaluation_summary

    summary = {**results, **evaluation_summary(run.evaluation), "adapter_uri": saved.uri}
    run.sinks.on_end(summary, str(run.report_dir))
    # After the sinks: the registry record reuses the MLflow version they registered.
    from kubetune_trainer.registry import record_success

    entry = record_success(run.job, report, run.prefix, run.output)
    if entry is not None:
        say(f"registry: {entry['name']} v{entry['version']}")


def evaluate_base(run: Run) -> tuple[float, dict[str, float]]:
    """(eval loss, the objective's other metrics, e.g. base_ordering_accuracy) of the base."""
    with run.loaded.model.disable_adapter():  # the frozen base, same data, same code
        metrics = run.trainer.evaluate(metric_key_prefix="base")
    loss = float(metrics["base_loss"])
    run.say(f"base eval loss (adapter disabled): {loss:.4f}")
    # evaluate() names them base_*. TRL's DPO adds eval_rewards/* there too: with the
    # adapter disabled the policy is its own reference, so those are zero by construction.
    named = objective_metrics({f"eval_{k[5:]}": v for k, v in metrics.items() if k[:5] == "base_"})
    return loss, {f"base_{k[5:]}": v for k, v in named.items()}


def language_model_loss(job: FineTuneJob) -> bool:
    """Whether the eval loss is a token-level language-model cross-entropy (SFT of a causal
    or masked LM), the only loss whose exp() is a perplexity. DPO, ranking and
    classification losses are not."""
    return job.spec.objective == "sft" and job.spec.model.task in ("causal_lm", "masked_lm")


def _results(run: Run, history: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json's results: steps, the base and tuned figures, throughput, best checkpoint."""
    state, built, prep = run.trainer.state, run.built, run.loaded.prepared
    results: dict[str, Any] = {
        "steps": state.global_step,
        "epochs_done": round(float(state.epoch or 0), 3),
        "base_eval_loss": run.base_eval,
        "tuned_eval_loss": run.tuned_eval,
    }
    if run.lm_loss:  # exp(loss) is a perplexity only for a token-level language-model loss
        results.update(base_perplexity=_ppl(run.base_eval), tuned_perplexity=_ppl(run.tuned_eval))
    mean_loss = [r["train_loss"] for r in state.log_history if "train_loss" in r]
    results.update(
        planned_steps=state.max_steps,
        stop_reason=stop_reason(state, run.job),
        final_train_loss=run.progress.loss,
        # The Trainer's mean over the run: the only train loss when loggingSteps > steps.
        mean_train_loss=mean_loss[-1] if mean_loss else None,
        train_examples=built.train_examples,
        eval_examples=built.eval_examples,
        # Every attempt's rows (metrics.jsonl is restored on resume), not this one's only.
        tokens_per_second=measured_tps(_metrics_rows(run.report_dir) or run.logs.history),
        best_checkpoint=_best_uri(run.ckpts, state),
        precision=run.loaded.precision,
        data_fingerprint=prep.fingerprint,
    )
    results.update(_final_metrics(history, run.base_metrics, run.evaluation, prep.kind))
    return results


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


def _metrics_rows(report_dir: Path) -> list[dict[str, Any]]:
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


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else (math.exp(loss) if loss < 50 else float("inf"))


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


def _report(run: Run, results: dict[str, Any]) -> dict[str, Any]:
    """report.json: what was trained, on what, how, with what result."""
    job, loaded, truncation = run.job, run.loaded, run.built.truncation
    t, a = job.spec.training, job.spec.adapter
    assert run.saved is not None
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
        "adapter": run.saved.as_dict(),
        "resumed_from": run.resumed_from,
        "evaluation": run.evaluation,
    }
