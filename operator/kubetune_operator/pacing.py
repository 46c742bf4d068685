"""Pure: how often a running job's progress is read and written.

Progress alone changes every step; written each time, 1000 running jobs would be
hundreds of status PATCHes a second. So (per job):
  * a status change beyond `progress` (phase, a condition, the message, the attempt...)
    is written at once;
  * a change of `progress` alone is written at most once per `status_interval`
    (--status-interval, default 60 s), and not at all if only the estimates moved
    (etaSeconds, its display eta, tokensPerSecond: no step was done). Besides, a restarted
    operator knows no rate until it has seen steps advance: its first look would erase
    every job's ETA, a write per job that says nothing new;
  * with many running jobs the interval grows so that progress writes take at most
    PROGRESS_SHARE of the --qps budget (progress_interval): 5000 running jobs written every
    60 s would be 83 writes/s against a --qps of 50 (a small shared API server), and the
    creations and phase changes behind them would wait for the whole fleet's progress;
  * rank 0 is scraped no more often than a write could show it (that interval), and
    no more often than a step finishes (a slow model's step can take minutes), capped
    at MAX_SCRAPE_INTERVAL so a job is never unwatched for long.
One small record per job, dropped with the job (its STOP): no per-job history. A record starts
as if just written, so an operator restart with many running jobs does not rewrite every
job's progress at once (a phase change still goes through at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .progress import RateSample

MAX_SCRAPE_INTERVAL = 300.0
# A progress write gives way to job creations (throttle.py) only while the status it would
# update is younger than this many status intervals, and at least MIN_DEFERRED_SECONDS: a
# long burst of new jobs cannot hold a running job's progress back for the whole burst
# (4 min at the default 60 s), and a short interval does not end the priority lane at once.
MAX_DEFERRED_INTERVALS = 4
MIN_DEFERRED_SECONDS = 60.0
# At most this share of --qps goes to progress writes: the rest stays free for creations,
# phase changes and deletions, however many jobs run.
PROGRESS_SHARE = 0.5
# Progress fields that are estimates derived from the others (they move between steps).
ESTIMATES = frozenset({"etaSeconds", "eta", "tokensPerSecond"})


@dataclass(slots=True)  # one per running job: no __dict__ (issue 21)
class Pace:
    last_write: float = -math.inf  # monotonic time of our last status write
    next_scrape: float = 0.0  # monotonic time rank 0 may be scraped again
    # The current attempt's first (time, step), for the ETA: kept here, not in a map keyed by
    # attempt, so forgetting a deleted job is one pop (no scan over every job's samples).
    rate: RateSample | None = None
    rate_attempt: int = -1


def classify(patch: dict[str, Any]) -> str:
    """'urgent' (beyond progress: write now), 'progress' (pace it) or 'estimates' (skip)."""
    if not patch:
        return "estimates"
    if set(patch) != {"progress"}:
        return "urgent"
    progress = patch["progress"]
    if isinstance(progress, dict) and set(progress) <= ESTIMATES:
        return "estimates"
    return "progress"


def progress_interval(status_interval: float, running: int, qps: float) -> float:
    """Seconds between a job's progress writes: --status-interval, or longer when `running`
    jobs written that often would take more than PROGRESS_SHARE of `qps` requests/s
    (2000 running jobs at --qps 50: 80 s; 5000: 200 s; up to 1500 the status interval)."""
    return max(status_interval, running / (PROGRESS_SHARE * qps))


def should_write(patch: dict[str, Any], pace: Pace, now: float, status_interval: float) -> bool:
    kind = classify(patch)
    if kind == "urgent":
        return True
    if kind == "estimates":
        return False
    return now - pace.last_write >= status_interval


def scrape_interval(step_seconds: float | None, status_interval: float) -> float:
    """Seconds until the next scrape: one status interval, or one step if that is longer."""
    interval = max(status_interval, step_seconds or 0.0)
    return min(interval, max(MAX_SCRAPE_INTERVAL, status_interval))


def may_defer(pace: Pace, now: float, status_interval: float) -> bool:
    """May this job's progress write give way to creations? Not once it is stale."""
    limit = max(MAX_DEFERRED_INTERVALS * status_interval, MIN_DEFERRED_SECONDS)
    return now - pace.last_write < limit
