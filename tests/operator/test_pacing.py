"""Pure pacing rules (pacing.py): what is written now, later or never; how often to scrape."""

from __future__ import annotations

from kubetune_operator.pacing import (
    MAX_SCRAPE_INTERVAL,
    Pace,
    classify,
    scrape_interval,
    should_write,
)


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
    assert should_write(step, Pace(), 0.0, 30)  # the first write of a job is never held


def test_scrape_interval_follows_slow_steps_within_bounds():
    assert scrape_interval(None, 30) == 30
    assert scrape_interval(0.5, 30) == 30  # fast steps: no faster than a write could show
    assert scrape_interval(90, 30) == 90  # one look per step
    assert scrape_interval(10_000, 30) == MAX_SCRAPE_INTERVAL  # never unwatched for long
