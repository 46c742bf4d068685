"""Start-up, in dependency order: hardware -> data -> base + tokenizer -> preflight -> model + LoRA.

Everything here happens before the first training step, so every refusal (bad spec for
this hardware, bad data, not enough memory) costs seconds and touches no artifact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import scheme_of
from kubetune_trainer import unsloth_backend
from kubetune_trainer.modeling import hardware, loader, preflight
from kubetune_trainer.records import PreparedDataset

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    system: hardware.SystemReport
    precision: str
    prepared: PreparedDataset
    base: loader.BaseModel
    memory: preflight.MemoryEstimate
    tokenizer: Any
    model: Any  # peft model
    trainable: int
    total: int


def offline_env(job: FineTuneJob) -> None:
    """No hub traffic unless the base is a hub id and the environment allows it."""
    if scheme_of(job.spec.model.base) != "" or os.path.isdir(job.spec.model.base):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# A built-in tokenizer learns from at most this many records of a streamed (large) set.
BUILTIN_TEXT_RECORDS = 20_000


def training_texts(prepared: PreparedDataset) -> list[str]:
    """The text a built-in tokenizer is trained on (records of every kind; of data kept on
    disk, the first BUILTIN_TEXT_RECORDS records)."""
    from itertools import islice

    from kubetune_trainer.data.streamed import JsonlRecords

    records: Any = prepared.train
    if isinstance(records, JsonlRecords):
        records = islice(records, BUILTIN_TEXT_RECORDS)
    out = []
    for r in records:
        for k in ("prompt", "completion", "text", "chosen", "rejected"):
            if isinstance(r.get(k), str):
                out.append(r[k])
        for m in r.get("messages") or []:
            out.append(m.get("content", ""))
        out.extend(r.get("responses") or [])
    return out


def load_all(
    job: FineTuneJob,
    prepared: PreparedDataset | None,
    say: Any,
    system: hardware.SystemReport | None = None,
    before_model: Callable[[PreparedDataset], None] | None = None,
) -> Loaded:
    """Everything before the first step. `system`: this machine's report, when the caller
    measured it already (or describes the memory a run may use: the preflight decides on it).
    `before_model`: called with the final prepared data before any weights load (the run's
    resume decision, which needs the data fingerprint and may refuse)."""
    from transformers import AutoConfig, set_seed

    spec = job.spec
    # 1. hardware: refuse what cannot run here before reading anything big
    system = system or hardware.system_report()
    say(f"system: {system.summary()}")
    if system.device == "cpu":
        say(
            "warning: no GPU found, training on the CPU (fine for small models, slow for "
            "large ones)"
        )
    hardware.check_hardware(spec, system)
    from kubetune_trainer.recipes.lm_loss import mode

    mode()  # a bad KUBETUNE_LOSS is refused here, not at the first step
    if spec.training.engine == "unsloth":
        unsloth_backend.preflight(
            job,
            cuda_available=system.device == "cuda",
            importable=unsloth_backend.unsloth_importable(),
        )
    precision = hardware.resolve_precision(spec, system)
    # 2. data: a built-in tokenizer is trained on it, and bad rows must fail early
    if prepared is None:
        from kubetune_trainer.data.interrupt import preemptible
        from kubetune_trainer.data.streamed import prepare_for_training

        with preemptible("data preparation"):  # SIGTERM here stops now (exit 76)
            prepared = prepare_for_training(job)  # on disk when large (data/streamed.py)
    say(
        f"data: {len(prepared.train)} train / {len(prepared.validation)} validation "
        f"{prepared.kind} records (format {prepared.format}, {prepared.fingerprint[:19]})"
    )
    if prepared.stats.validation_note:
        say(f"warning: {prepared.stats.validation_note}")
    # 3. base: fetched/converted/built to a local folder, and its tokenizer
    base = loader.resolve_base(spec, training_texts(prepared))
    tokenizer = loader.load_tokenizer(spec, base)
    if prepared.format == "papers" and not prepared.exact_chunks:
        # Validation above ran before any model file was read; papers chunks are sized in
        # tokens, so cut them again with the real tokenizer (the estimate can overshoot).
        from kubetune_trainer.data.interrupt import preemptible
        from kubetune_trainer.data.streamed import prepare_for_training

        with preemptible("data preparation"):
            prepared = prepare_for_training(job, tokenizer)
        say(
            f"data: papers re-chunked with the base's tokenizer: {len(prepared.train)} train "
            f"/ {len(prepared.validation)} validation chunks ({prepared.fingerprint[:19]})"
        )
    if before_model is not None:
        before_model(prepared)
    # 4. memory preflight from the config alone
    config = AutoConfig.from_pretrained(
        base.location, revision=spec.model.revision, trust_remote_code=spec.model.trust_remote_code
    )
    if spec.model.task == "sequence_classification":
        config.num_labels = spec.model.num_labels
    memory = preflight.preflight(
        spec, config, precision, system.memory_available_bytes, system.device
    )
    say(f"memory preflight: {memory.table()}")
    for note in memory.notes:
        say(note)
    # 5. tokenizer and model; the seed fixes LoRA's initial weights
    set_seed(spec.training.seed)
    if spec.training.engine == "unsloth":  # pragma: no cover - CUDA only, preflight above
        model, tokenizer = unsloth_backend.load_model(job, base.location, base.tokenizer_location)
    else:
        model = loader.load_base_model(spec, base, precision, spec.model.num_labels)
        model = loader.attach_lora(spec, model, memory.gradient_checkpointing)
    trainable, total = loader.parameter_counts(model)
    say(
        f"model: {base.display} ({type(model.get_base_model()).__name__}), quantization "
        f"{spec.quantization.mode}, precision {precision}; trainable {trainable:,} of "
        f"{total:,} parameters ({100 * trainable / max(total, 1):.3f}%)"
    )
    say(f"architecture: {loader.model_summary(model)}")
    return Loaded(system, precision, prepared, base, memory, tokenizer, model, trainable, total)
