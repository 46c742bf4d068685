"""Pacing rules (pacing.py: what is written now, later or never; how often to scrape)
and API flow control (throttle.py: QPS/burst, Retry-After)."""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest

from kubetune_api.constants import TrainerMetric
from kubetune_operator.config import OperatorConfig
from kubetune_operator.handlers import reconcile
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.pacing import (
    MAX_DEFERRED_INTERVALS,
    MAX_SCRAPE_INTERVAL,
    MIN_DEFERRED_SECONDS,
    PROGRESS_SHARE,
    Pace,
    classify,
    may_defer,
    progress_interval,
    scrape_interval,
    should_write,
)
from kubetune_operator.throttle import Deferred, TokenBucket, retry_after


def test_a_phase_or_condition_change_is_written_at_once():
    pace = Pace(last_write=100.0)
    patch = {"phase": "Succeeded", "progress": {"step": 10}}
    assert classify(patch) == "urgent" and should_write(patch, pace, 100.1, 30)
    assert should_write({"conditions": [{"type": "Running"}]}, pace, 100.1, 30)


def test_progress_alone_waits_for_the_interval_and_estimates_alone_are_never_written():
    pace = Pace(last_write=100.0)
    step = {"progress": {"step": 11, "display": "11/100 (11%)"}}
    assert not should_write(step, pace, 129.9, 30)
    assert should_write(step, pace, 130.0, 30)
    estimates = {"progress": {"etaSeconds": 12.5, "tokensPerSecond": 900.0}}
    assert classify(estimates) == "estimates" and not should_write(estimates, pace, 1e9, 30)
    # A restarted operator knows no rate yet: the ETA it would erase is an estimate too.
    erased = {"progress": {"etaSeconds": None, "eta": ""}}
    assert classify(erased) == "estimates" and not should_write(erased, pace, 1e9, 30)
    assert should_write(step, Pace(), 0.0, 30)  # the first write of a job is never held


def test_progress_gives_way_to_creations_only_while_it_is_fresh():
    pace = Pace(last_write=100.0)
    limit = 100.0 + MAX_DEFERRED_INTERVALS * 30
    assert may_defer(pace, 131.0, 30) and may_defer(pace, limit - 0.1, 30)
    assert not may_defer(pace, limit, 30)  # a long burst does not hold it back any longer
    assert not may_defer(Pace(), 0.0, 30)  # never written: not held back at all
    # A short interval still gives creations a minute (the burst tests run at 0.2 s).
    assert may_defer(pace, 100.0 + MIN_DEFERRED_SECONDS - 0.1, 0.2)
    assert not may_defer(pace, 100.0 + MIN_DEFERRED_SECONDS, 0.2)


def test_scrape_interval_follows_slow_steps_within_bounds():
    assert scrape_interval(None, 30) == 30
    assert scrape_interval(0.5, 30) == 30  # fast steps: no faster than a write could show
    assert scrape_interval(90, 30) == 90  # one look per step
    assert scrape_interval(10_000, 30) == MAX_SCRAPE_INTERVAL  # never unwatched for long


def test_token_bucket_lets_a_burst_through_then_spaces_requests_at_qps():
    bucket = TokenBucket(qps=10, burst=3)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert 0.09 <= waits[3] <= 0.1 and 0.19 <= waits[4] <= 0.2


def test_deferrable_requests_give_their_slot_to_creations():
    async def scenario() -> None:
        bucket = TokenBucket(qps=20, burst=1)
        assert await bucket.acquire(deferrable=True) == 0  # no creation: it goes
        with bucket.creation():
            with pytest.raises(Deferred):  # a creation is under way: not even queued
                await bucket.acquire(deferrable=True)
            assert await bucket.acquire() > 0  # anything else waits its turn as ever
        # A creation that begins while a deferrable request waits for its slot takes it.
        before, stamp = bucket.tokens, bucket.stamp
        waiting = asyncio.ensure_future(bucket.acquire(deferrable=True))
        await asyncio.sleep(0)
        with bucket.creation():
            with pytest.raises(Deferred):
                await waiting
            tokens = bucket.tokens
        # The slot was given back: the tokens are what refill alone made of them.
        refilled = min(bucket.burst, before + (bucket.stamp - stamp) * bucket.qps)
        assert bucket.creating == 0 and abs(tokens - refilled) < 1e-9

    asyncio.run(scenario())


def test_retry_after_is_a_floor_with_backoff_and_a_cap():
    assert retry_after({"Retry-After": "2"}, 0) == 2
    assert retry_after({}, 0) == 0.5 and retry_after({}, 3) == 4  # no header: backoff
    assert retry_after({"Retry-After": "1"}, 2) == 2  # backoff grows past a small ask
    assert retry_after({"Retry-After": "3600"}, 0) == 60  # capped
    assert retry_after({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 0) == 0.5


def test_each_attempt_measures_its_own_step_rate_in_the_jobs_pace():
    """The ETA's first sample lives in the job's Pace (one pop forgets a deleted job); a new
    attempt (a retry resuming at an earlier step) starts a sample of its own."""

    class Rank0:
        step = 0

        async def scrape(self, ip: str, port: int) -> str:
            return f"{TrainerMetric.STEP} {self.step}\n{TrainerMetric.TOTAL_STEPS} 100\n"

    memo = kopf.Memo(
        config=OperatorConfig(status_interval=0.0), paces={}, metrics=OperatorMetrics()
    )
    rank0, log = Rank0(), logging.getLogger("test")

    def look(attempt: int, step: int) -> object:
        rank0.step = step
        memo.paces[("ns", "a")].next_scrape = 0.0  # due now
        return asyncio.run(reconcile._progress(memo, rank0, "ns", "a", attempt, "ip", 1, log))

    memo.paces[("ns", "a")] = Pace()
    look(1, 10)
    p = look(1, 60)
    pace = memo.paces[("ns", "a")]
    assert (pace.rate_attempt, pace.rate.step) == (1, 10) and p.eta_seconds is not None
    p = look(2, 40)  # attempt 2 resumed from a checkpoint at step 40: no rate from attempt 1's
    assert (pace.rate_attempt, pace.rate.step) == (2, 40) and p.eta_seconds is None
    memo.accepted, memo.preflights = {}, {}
    reconcile.forget(memo, "ns", "a")
    assert not memo.paces  # the sample went with the pace


def test_progress_interval_keeps_the_fleets_progress_within_its_share_of_the_qps():
    assert progress_interval(30, 0, 50) == 30
    assert progress_interval(30, 500, 50) == 30  # 500 jobs / 30 s = 17 writes/s: within 25
    assert progress_interval(30, 1000, 50) == 40  # 25 writes/s, not 33
    assert progress_interval(30, 5000, 50) == 200
    assert progress_interval(30, 5000, 500) == 30  # a raised cap keeps the configured pace
    for running in (1, 10, 100, 1000, 10**4, 10**5):
        assert running / progress_interval(30, running, 50) <= PROGRESS_SHARE * 50 + 1e-9


def test_by_default_a_long_running_job_writes_its_progress_at_most_once_a_minute():
    """Issue 21's write budget: <= 1 progress write per running minute. A job whose step
    advances every second, looked at every reconcile interval for an hour, at the defaults."""
    config = OperatorConfig()
    pace = Pace(last_write=0.0)  # as a pace starts: as if just written
    writes, now = 0, 0.0
    while now < 3600:
        now += config.reconcile_interval
        interval = progress_interval(config.status_interval, 1, config.api_qps)
        if should_write({"progress": {"step": int(now)}}, pace, now, interval):
            pace.last_write, writes = now, writes + 1
    assert 50 <= writes <= 60  # still written: about once a minute


def test_the_phase_counts_follow_each_jobs_phase():
    m = OperatorMetrics()
    m.set_phase("ns", "a", "Running")
    m.set_phase("ns", "b", "Running")
    m.set_phase("ns", "a", "Running")  # a pass that changed nothing
    assert m.count("Running") == 2
    m.set_phase("ns", "a", "Succeeded")
    m.set_phase("ns", "b", None)  # deleted
    assert (m.count("Running"), m.count("Succeeded"), m.count("Failed")) == (0, 1, 0)
