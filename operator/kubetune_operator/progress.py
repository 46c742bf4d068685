"""Pure: rank 0's Prometheus text -> Progress (step, total, epoch, loss, tokens/s, ETA)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from kubetune_api.constants import TrainerMetric
from kubetune_api.status import Progress

from .status import eta_display, progress_display

# Sample name -> the key parse_metrics returns (the names: kubetune_api's one list).
_NAMES = {
    TrainerMetric.STEP: "step",
    TrainerMetric.TOTAL_STEPS: "total_steps",
    TrainerMetric.EPOCH: "epoch",
    TrainerMetric.LOSS: "loss",
    TrainerMetric.EVAL_LOSS: "eval_loss",
    TrainerMetric.TOKENS: "tokens",  # a counter: tokens/s is its rate between scrapes
    TrainerMetric.ETA: "eta",  # the trainer's own: set before its first step
}


@dataclass(slots=True)  # one per running job: no __dict__ (issue 21)
class RateSample:
    """The first (time, step) seen in this attempt: ETA = remaining steps / observed rate.

    (`tokens`, `tokens_t`): the token counter when to_progress first saw it (again after the
    counter restarts): tokens/s = the counter's increase since / the time since.
    """

    t: float
    step: int
    tokens: float | None = None
    tokens_t: float = 0.0


# Status fields are int64 in the CRD; a counter past 2**53 is not a real step count anyway.
_MAX_COUNT = 2.0**53
_log = logging.getLogger(__name__)


def parse_metrics(text: str, logger: logging.Logger | None = None) -> dict[str, float]:
    """Our gauges from rank 0's text; +Inf/NaN and absurd counts are dropped with a warning
    (the trainer's pod is not trusted: a bad value must never stop the job's passes)."""
    values: dict[str, float] = {}
    dropped: list[str] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = _NAMES.get(sample.name)
                if key is None:
                    continue
                value = float(sample.value)
                if not math.isfinite(value) or abs(value) >= _MAX_COUNT:
                    dropped.append(f"{sample.name}={sample.value}")
                    continue
                values[key] = value
    except (ValueError, TypeError):
        return {}
    if dropped:
        (logger or _log).warning(f"ignored non-finite or out-of-range metrics: {dropped[:5]}")
    return values


def to_progress(values: dict[str, float], now: float, first: RateSample | None) -> Progress:
    step = int(values.get("step", 0))
    total = int(values.get("total_steps", 0))
    p = Progress(
        step=max(step, 0),
        total_steps=max(total, 0),
        epoch=max(values.get("epoch", 0.0), 0.0),
        loss=values.get("loss"),
        eval_loss=values.get("eval_loss"),
    )
    tokens = values.get("tokens")
    if first is not None and tokens is not None:
        if first.tokens is None or tokens < first.tokens:  # first sight, or a new process
            first.tokens, first.tokens_t = tokens, now
        elif now > first.tokens_t and tokens > first.tokens:
            p.tokens_per_second = round((tokens - first.tokens) / (now - first.tokens_t), 1)
    if first is not None and step > first.step and now > first.t and total > step:
        rate = (step - first.step) / (now - first.t)
        p.eta_seconds = round((total - step) / rate, 1)
    elif (values.get("eta") or 0) > 0 and step < total:
        # No rate observed yet (before step 1, or just after a scrape restart): the
        # trainer's estimate from its preflight and warm-up (engine/eta.py); 0 is a gauge
        # not set yet, not an estimate.
        p.eta_seconds = round(values["eta"], 1)
    p.eta = eta_display(p.eta_seconds)
    p.display = progress_display(p)
    return p
