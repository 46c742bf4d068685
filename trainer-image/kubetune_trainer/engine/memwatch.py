"""Memory while training: logged at each major operation, sampled in between, and a reaction
when it passes the high-water mark (80%, the preflight's own HIGH_WATER).

What "memory" is: on a GPU this rank's device (total minus free, as the CUDA driver sees
it: what an OOM is about); on a CPU the container's working set against its cgroup limit,
else this process's RSS against the host's RAM. KUBETUNE_MEMORY_LIMIT_BYTES replaces the
limit (headroom for a sidecar; tests use it to make the reaction fire on a tiny model) and
KUBETUNE_MEMORY_WATCH_THRESHOLD the 0.80.

Marks: load (+ quantize and LoRA: one call loads, packs and wraps the weights), first
step, every evaluation and checkpoint, and the adapter's export. A sampler thread reads
every KUBETUNE_MEMORY_WATCH_SECONDS (default 2 s) during train(); above the threshold it
warns once and flags the run. The reaction happens at the next safe point, the end of an
optimizer step (no autograd graph alive, gradients zeroed), decided by all ranks together:
  * gradient checkpointing is switched on (non-reentrant, so the frozen, possibly 4-bit,
    base needs no input gradients): activations drop to about one layer's worth and the
    math is unchanged, so losses are the same as without the reaction;
  * already on, or under DeepSpeed (its engine owns checkpointing): no live change. Halving
    training.microBatchSize while doubling gradientAccumulation is NOT done live: the
    Trainer fixed the dataloader, the steps per epoch, the LR schedule and the resumable
    data position (examples_seen) at train() start; changing them mid-epoch would skip or
    repeat data. It is logged and reported as the recommendation for the next attempt.
The report lists the marks, the peak, the warnings and reactions, and the bytes each
technique (4-bit, gradient checkpointing, LoRA) saves by kubetune_api.memory's estimate.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import torch
from transformers import TrainerCallback

from kubetune_api.memory import GIB, HIGH_WATER
from kubetune_trainer.reporting.sinks import LogRow

log = logging.getLogger(__name__)
LIMIT_ENV = "KUBETUNE_MEMORY_LIMIT_BYTES"
THRESHOLD_ENV = "KUBETUNE_MEMORY_WATCH_THRESHOLD"
INTERVAL_ENV = "KUBETUNE_MEMORY_WATCH_SECONDS"


@dataclass(frozen=True)
class Reading:
    used: int
    limit: int
    source: str

    @property
    def ratio(self) -> float:
        return self.used / max(self.limit, 1)

    def text(self) -> str:
        return (
            f"{self.used / GIB:.2f} of {self.limit / GIB:.2f} GiB ({self.ratio:.0%}, {self.source})"
        )


def read_memory(device: str) -> Reading:
    """This rank's memory now (see the module doc); KUBETUNE_MEMORY_LIMIT_BYTES caps the limit."""
    if device == "cuda":  # pragma: no cover - CUDA only (tests/trainer/gpu)
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        reading = Reading(total - free, total, f"cuda:{index}")
    else:
        from kubetune_trainer.modeling.hardware import cgroup_memory

        cg, vm = cgroup_memory(), psutil.virtual_memory()
        if cg is not None and cg.total < vm.total:
            reading = Reading(cg.total - cg.available, cg.total, cg.source)
        else:
            reading = Reading(psutil.Process().memory_info().rss, vm.total, "process RSS of host")
    override = os.environ.get(LIMIT_ENV, "")
    if override.isdigit() and int(override) > 0:
        return Reading(reading.used, int(override), f"{reading.source}, limit from {LIMIT_ENV}")
    return reading


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        log.warning("%s=%r is not a number: using %s", name, os.environ.get(name), default)
        return default


class MemoryWatch(TrainerCallback):
    """Marks, the sampler thread and the reaction (module doc). `read`: the memory reading
    (read_memory by default); `export`: where mark rows go (SinkFanout.on_gauges: the
    run's Prometheus gauges)."""

    def __init__(
        self,
        job: Any,
        model: Any,
        device: str,
        say: Callable[[str], None],
        export: Callable[[LogRow], None] | None = None,
        read: Callable[[], Reading] | None = None,
    ) -> None:
        self.job, self.model, self.say = job, model, say
        self.export = export or (lambda row: None)
        self.read = read or (lambda: read_memory(device))
        self.threshold = _env_float(THRESHOLD_ENV, HIGH_WATER)
        self.interval = _env_float(INTERVAL_ENV, 2.0)
        self.deepspeed = job.spec.distributed.deepspeed != "none"
        self.checkpointing = job.spec.training.gradient_checkpointing == "on"
        self.marks: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.warnings = 0
        self.peak: Reading | None = None
        self.recommendation: str | None = None
        self.pressure = False  # set by the sampler, cleared by the reaction
        # Nothing left to do live (checkpointing on, recommendation given): further readings
        # above the threshold only move the peak, no warning or reaction at every step.
        self.exhausted = False
        self._state: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_step_seen = False

    # -- marks -----------------------------------------------------------------------------
    def mark(self, op: str) -> Reading | None:
        try:
            r = self.read()
        except Exception as exc:  # a reading must never stop a run
            log.warning("memory reading failed at %s: %s", op, exc)
            return None
        self._note(r)
        step = self._state.global_step if self._state is not None else None
        self.marks.append({"op": op, "step": step, **asdict(r), "ratio": round(r.ratio, 4)})
        rank0 = self._state is None or self._state.is_world_process_zero
        if rank0 and int(os.environ.get("RANK", "0")) == 0:
            self.say(f"memory at {op}: {r.text()}")
        if self._state is not None:
            row = LogRow(self._state.global_step, self._state.max_steps,
                         float(self._state.epoch or 0.0))  # fmt: skip
            row.memory_bytes = {"used": r.used, "limit": r.limit}
            self.export(row)
        return r

    def _note(self, r: Reading) -> None:
        if self.peak is None or r.used > self.peak.used:
            self.peak = r
        if r.ratio > self.threshold and not self.pressure and not self.exhausted:
            self.pressure = True
            self.warnings += 1
            log.warning(
                "memory %s is above %.0f%%: reacting at the next step end",
                r.text(), 100 * self.threshold,
            )  # fmt: skip

    # -- the sampler -----------------------------------------------------------------------
    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._note(self.read())
            except Exception as exc:
                log.warning("memory sampler stopped: %s", exc)
                return

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self._state = state
        self.checkpointing = self.checkpointing or bool(args.gradient_checkpointing)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="memwatch", daemon=True)
        self._thread.start()
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.stop()
        return control

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- safe points -----------------------------------------------------------------------
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if not self._first_step_seen:
            self._first_step_seen = True
            self.mark("first step")
        from kubetune_trainer.distributed import any_rank

        if any_rank(self.pressure):  # every rank reacts at the same step, or none does
            self.react(state.global_step)
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.mark("eval")
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self.mark("checkpoint")
        return control

    def react(self, step: int) -> None:
        """At an optimizer step's end: gradient checkpointing on, else a recommendation."""
        self.pressure = False
        before = self.peak.text() if self.peak is not None else "?"
        if not self.checkpointing and not self.deepspeed:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            self.model.config.use_cache = False
            self.checkpointing = True
            action = "gradient checkpointing turned on"
        else:
            t = self.job.spec.training
            why = "under DeepSpeed" if self.deepspeed else "gradient checkpointing is on already"
            action = f"no live change ({why})"
            self.exhausted = True
            if t.micro_batch_size > 1:
                self.recommendation = (
                    f"set training.microBatchSize {t.micro_batch_size // 2} and "
                    f"training.gradientAccumulation {t.gradient_accumulation * 2} (same "
                    "effective batch) for the next attempt"
                )
        if torch.cuda.is_available():  # pragma: no cover - CUDA only
            torch.cuda.empty_cache()
        self.reactions.append({"step": step, "action": action, "peak_before": before})
        tail = f"; recommended: {self.recommendation}" if self.recommendation else ""
        log.warning("memory above %.0f%% at step %d: %s%s", 100 * self.threshold, step,
                    action, tail)  # fmt: skip
        if int(os.environ.get("RANK", "0")) == 0:
            self.say(f"memory reaction at step {step}: {action}{tail}")

    # -- the report ------------------------------------------------------------------------
    def summary(self, savings: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "peak": {**asdict(p), "ratio": round(p.ratio, 4)} if (p := self.peak) else None,
            "marks": self.marks,
            "warnings": self.warnings,
            "reactions": self.reactions,
            "recommendation": self.recommendation,
            "savings_bytes": savings or {},
        }


def load_label(job: Any) -> str:
    mode = job.spec.quantization.mode
    quantized = f"quantized to {mode}, " if mode != "none" else ""
    return f"load ({quantized}LoRA attached)"


def technique_savings(job: Any, loaded: Any, checkpointing: bool) -> dict[str, int]:
    """kubetune_api.memory.savings for this run's model (parameters counted on the meta
    device from its config, as the preflight does). `checkpointing`: whether gradient
    checkpointing ran (the preflight's choice, or the watch's reaction)."""
    from transformers import AutoConfig

    from kubetune_api.memory import savings
    from kubetune_trainer.modeling.preflight import numbers

    spec = job.spec
    try:
        config = AutoConfig.from_pretrained(
            loaded.base.location, revision=spec.model.revision,
            trust_remote_code=spec.model.trust_remote_code,
        )  # fmt: skip
        n = numbers(config, spec.adapter.target_modules, spec.model.task)
        return savings(spec, n, loaded.precision, loaded.system.device, checkpointing)
    except Exception as exc:  # the report goes on without it
        log.warning("memory savings not computed: %s", exc)
        return {}
