"""Estimated training time from the start: before the first step, then after warm-up.

Before step 1 nothing has been timed, so the first estimate is
    tokens to train (steps left x examples per step x mean tokens per example)
    / throughput,
the throughput being, in this order of trust:
  * measured: the mean tokens/s an earlier attempt of this run logged (metrics.jsonl is
    restored on resume, so a retried attempt starts from its own measured speed);
  * estimated: FLOPs per token of LoRA training over this device's measured matmul speed
    (a ~0.1 s matmul probe) times EFFICIENCY, plus a fixed per-step overhead. Forward 2N and
    the input-gradient backward 2N (frozen base: no weight gradients), 2N more when
    gradient checkpointing recomputes the forward, and causal attention 6·layers·seq·hidden.
After WARMUP_STEPS steps (the first step excluded: allocator and kernel warm-up) the
measured seconds per step replace it. The estimate is logged, exported on
kubetune_train_eta_seconds (which the operator shows as status.progress.etaSeconds)
before the first step and again when refined, and report.json's `eta` compares both
estimates with the actual training time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from kubetune_trainer.reporting.sinks import LogRow
from kubetune_trainer.reporting.watch_report import fmt_seconds as _fmt

log = logging.getLogger(__name__)

WARMUP_STEPS = 3  # timed steps (after the first) before the refined estimate
EFFICIENCY = {"cpu": 0.25, "cuda": 0.35}  # share of matmul peak training reaches
STEP_OVERHEAD = {"cpu": 0.05, "cuda": 0.01}  # seconds per optimizer step (optimizer, loader)


@dataclass
class EtaPlan:
    """What the first estimate was made of (report.json's eta.start)."""

    steps: int  # optimizer steps left
    tokens: int  # real tokens those steps will see (estimated)
    tokens_per_second: float
    source: str  # "measured (earlier attempt)" or "estimated (...)"
    seconds: float


def matmul_flops(device: str, seconds: float = 0.1) -> float:
    """FLOP/s of a square fp32 matmul on `device`, measured for about `seconds`."""
    n = 512
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # first call: allocation and kernel selection, not timed
    done, t0 = 0, time.perf_counter()
    while True:
        a @ b
        done += 1
        if device == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() - t0 >= seconds:
            break
    return done * 2 * n**3 / (time.perf_counter() - t0)


def flops_per_token(params: int, layers: int, hidden: int, seq: float, recompute: bool) -> float:
    """LoRA training FLOPs per token: frozen base, so no weight gradients (see module doc)."""
    passes = 6 if recompute else 4
    return passes * params + 6 * layers * seq * hidden


def mean_tokens(dataset: Any, fallback: int, sample: int = 2000) -> float:
    """Mean tokens per training example: input_ids lengths of the tokenized split (at most
    `sample` rows), else `fallback` (maxSeqLength: pessimistic)."""
    cols = getattr(dataset, "column_names", None) or []
    for col in ("input_ids", "chosen_input_ids"):
        if col in cols:
            rows = dataset[: min(len(dataset), sample)][col]
            if rows:
                return sum(len(r) for r in rows) / len(rows)
    return float(fallback)


def measured_tps(rows: list[dict[str, Any]]) -> float | None:
    """Mean tokens/s of metrics.jsonl rows (an earlier attempt's speed; report.json's)."""
    tps = [r["tokens_per_second"] for r in rows if r.get("tokens_per_second")]
    return sum(tps) / len(tps) if tps else None


class EtaCallback(TrainerCallback):
    """The start estimate at on_train_begin, the refined one after WARMUP_STEPS steps.

    `export(row)`: where ETA rows go (SinkFanout.on_gauges: the run's Prometheus gauges).
    `earlier`: metrics.jsonl rows of earlier attempts (their tokens/s is a measurement).
    """

    def __init__(
        self,
        job: Any,
        model: Any,
        device: str,
        say: Callable[[str], None],
        export: Callable[[LogRow], None] | None = None,
        earlier: list[dict[str, Any]] | None = None,
        probe: Callable[[str], float] = matmul_flops,
    ) -> None:
        self.job, self.model, self.device, self.say = job, model, device, say
        self.export = export or (lambda row: None)
        self.earlier = earlier or []
        self.probe = probe
        self.start: EtaPlan | None = None
        self.refined: float | None = None  # seconds left after warm-up, from step `refined_at`
        self.refined_at: int | None = None
        self._t: list[tuple[float, int]] = []  # (time, step) at each step end
        self._t0 = 0.0
        self._step0 = 0

    # -- the estimate before the first step ------------------------------------------------
    def plan(self, args: Any, state: Any, dataset: Any) -> EtaPlan:
        spec = self.job.spec
        steps = max(state.max_steps - state.global_step, 0)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        per_step *= max(args.world_size, 1)
        seq = mean_tokens(dataset, spec.dataset.max_seq_length)
        tokens = int(steps * per_step * seq)
        earlier = measured_tps(self.earlier)
        if earlier:
            secs = tokens / earlier
            return EtaPlan(steps, tokens, earlier, "measured (earlier attempt)", secs)
        cfg = getattr(self.model, "config", None)
        params = sum(p.numel() for p in self.model.parameters())
        layers = getattr(cfg, "num_hidden_layers", 0) or 0
        hidden = getattr(cfg, "hidden_size", 0) or 0
        recompute = bool(getattr(args, "gradient_checkpointing", False))
        fpt = flops_per_token(params, layers, hidden, seq, recompute)
        peak = self.probe(self.device)
        eff = EFFICIENCY.get(self.device, EFFICIENCY["cpu"])
        tps = peak * eff / max(fpt, 1.0)
        # Ranks train in parallel: each sees 1/world of the tokens at the probed speed.
        compute = tokens / max(tps * max(args.world_size, 1), 1e-9)
        secs = compute + steps * STEP_OVERHEAD.get(self.device, STEP_OVERHEAD["cpu"])
        src = (
            f"estimated ({fpt / 1e6:.1f} MFLOP/token at {eff:.0%} of a measured "
            f"{peak / 1e9:.0f} GFLOP/s)"
        )
        return EtaPlan(steps, tokens, tokens / max(secs, 1e-9), src, secs)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self._t0, self._step0 = time.monotonic(), state.global_step
        self._t = []
        loader = kw.get("train_dataloader")
        try:
            self.start = self.plan(args, state, getattr(loader, "dataset", None))
        except Exception as exc:  # an estimate must never stop a run
            log.warning("no start ETA: %s", exc)
            return control
        if state.is_world_process_zero:
            s = self.start
            self.say(
                f"ETA at start: {_fmt(s.seconds)} for {s.steps} steps (~{s.tokens:,} tokens "
                f"at {s.tokens_per_second:,.0f} tokens/s, {s.source}); refined after "
                f"{WARMUP_STEPS} warm-up steps"
            )
            self._export(state, s.seconds)
        return control

    # -- refined after the warm-up ---------------------------------------------------------
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        self._t.append((time.monotonic(), state.global_step))
        if self.refined is not None or len(self._t) < WARMUP_STEPS + 1:
            return control
        (t1, s1), (t2, s2) = self._t[0], self._t[-1]  # from the end of the first step
        if s2 <= s1:
            return control
        per_step = (t2 - t1) / (s2 - s1)
        self.refined = per_step * max(state.max_steps - s2, 0)
        self.refined_at = s2
        if state.is_world_process_zero:
            start = f" (start estimate {_fmt(self.start.seconds)})" if self.start else ""
            self.say(
                f"ETA after {s2 - self._step0} steps: {_fmt(self.refined)} more at "
                f"{per_step:.3f} s/step{start}"
            )
            self._export(state, self.refined)
        return control

    def _export(self, state: Any, seconds: float) -> None:
        row = LogRow(state.global_step, state.max_steps, float(state.epoch or 0.0))
        row.eta_seconds = seconds
        try:
            self.export(row)
        except Exception as exc:
            log.warning("ETA export failed: %s", exc)

    # -- the report ------------------------------------------------------------------------
    def summary(self, training_seconds: float) -> dict[str, Any] | None:
        """report.json's `eta`: both estimates next to the actual training time."""
        if self.start is None:
            return None
        out: dict[str, Any] = {
            "start": {k: round(v, 2) if isinstance(v, float) else v
                      for k, v in asdict(self.start).items()},
            "actual_seconds": round(training_seconds, 2),
        }  # fmt: skip
        if training_seconds > 0:
            out["start_error"] = round(self.start.seconds / training_seconds - 1, 3)
        if self._t:  # evaluations and checkpoints are in training_seconds, not in steps
            out["steps_seconds"] = round(self._t[-1][0] - self._t0, 2)
        if self.refined is not None and self.refined_at is not None:
            at = next(t for t, s in self._t if s == self.refined_at)
            out["refined"] = {"at_step": self.refined_at, "seconds_left": round(self.refined, 2),
                              "actual_seconds_left": round(self._t[-1][0] - at, 2)}  # fmt: skip
        return out
