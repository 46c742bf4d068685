"""FineTuneJob training spec -> transformers TrainingArguments keywords (one mapping)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.errors import ConfigError


def training_kwargs(
    job: FineTuneJob, staging: Path, precision: str, cuda: bool, has_validation: bool
) -> dict[str, Any]:
    s = job.spec
    t = s.training
    ev = s.evaluation
    keep_best = bool(t.early_stopping) or ev.final_adapter == "best"
    if t.early_stopping and not has_validation:
        raise ConfigError(
            "spec.training.earlyStopping needs validation data; set "
            "dataset.validation.fraction above 0 or dataset.validation.source"
        )
    if ev.final_adapter == "best" and not has_validation:
        raise ConfigError(
            "spec.evaluation.finalAdapter: best needs validation data to judge checkpoints; "
            "set dataset.validation.fraction above 0, or finalAdapter: last"
        )
    if keep_best and t.save_steps and (not t.eval_steps or t.save_steps % t.eval_steps):
        raise ConfigError(
            f"spec.training.saveSteps {t.save_steps}: with finalAdapter best or earlyStopping "
            "the best checkpoint must be one that was saved; set training.evalSteps to a "
            "divisor of saveSteps (or leave saveSteps unset)"
        )
    kw: dict[str, Any] = {
        "output_dir": str(staging),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps or -1,
        "per_device_train_batch_size": t.micro_batch_size,
        "per_device_eval_batch_size": t.micro_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.scheduler,
        # transformers 5: a float below 1 is a share of the total steps
        "warmup_steps": t.warmup_ratio if t.warmup_ratio is not None else (t.warmup_steps or 0),
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "optim": t.optimizer,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not cuda,
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps,
        "report_to": "none",  # sinks do the reporting
        "disable_tqdm": True,  # the console sink draws the bar
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "save_total_limit": 1,  # local staging only; the store keeps keep_last
        "log_level": "warning",
    }
    if has_validation:
        kw["eval_strategy"] = "steps" if t.eval_steps else "epoch"
        if t.eval_steps:
            kw["eval_steps"] = t.eval_steps
    else:
        kw["eval_strategy"] = "no"
    save_steps = t.save_steps or (t.eval_steps if keep_best else None)
    if save_steps:
        kw["save_strategy"], kw["save_steps"] = "steps", save_steps
    else:
        kw["save_strategy"] = "epoch"
    if has_validation:
        # The best checkpoint by evaluation.selectBy is tracked whenever there is an
        # evaluation, so retention keeps it beside the newest N (CommitCallback protects it).
        from kubetune_trainer.evaluation.selection import greater_is_better, metric_key

        kw.update(
            metric_for_best_model=metric_key(ev.select_by),
            greater_is_better=greater_is_better(ev.select_by),
        )
    if keep_best:
        kw["load_best_model_at_end"] = True  # the final adapter is the best checkpoint
    if s.distributed.world_size > 1:
        from kubetune_trainer.distributed import ddp_timeout

        kw["ddp_find_unused_parameters"] = False
        kw["ddp_backend"] = "nccl" if cuda else "gloo"
        # A collective waiting on a silent peer fails after this long (exit 75), not never.
        kw["ddp_timeout"] = ddp_timeout(job)
    if s.distributed.deepspeed != "none":
        from kubetune_trainer.distributed import deepspeed_config  # only DeepSpeed runs pay

        kw["deepspeed"] = deepspeed_config(job)
    return kw
