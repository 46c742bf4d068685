"""wake.Wake: how a job's loop sleeps (one future, no helper tasks) and what ends a sleep."""

from __future__ import annotations

import asyncio
import time

from kubetune_operator.wake import Wake


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_poke_ends_the_sleep_at_once():
    async def scenario() -> float:
        wake = Wake()
        asyncio.get_running_loop().call_later(0.05, wake.set)
        t0 = time.monotonic()
        await wake.sleep(30)
        return time.monotonic() - t0

    assert run(scenario()) < 5


def test_a_poke_before_the_sleep_is_not_lost_and_clear_forgets_it():
    async def scenario() -> tuple[float, float]:
        wake = Wake()
        wake.set()  # an event while the pass was running
        t0 = time.monotonic()
        await wake.sleep(30)
        first = time.monotonic() - t0
        wake.clear()  # the next pass starts: it sees everything so far
        t0 = time.monotonic()
        await wake.sleep(0.2)
        return first, time.monotonic() - t0

    first, second = run(scenario())
    assert first < 0.1
    assert 0.15 < second < 5  # the timeout, nothing else


def test_the_timeout_ends_the_sleep_and_none_waits_for_a_poke():
    async def scenario() -> bool:
        wake = Wake()
        await wake.sleep(0.05)
        sleeper = asyncio.ensure_future(wake.sleep(None))
        await asyncio.sleep(0.2)
        still = not sleeper.done()
        wake.set()
        await asyncio.wait_for(sleeper, 5)
        return still

    assert run(scenario())


def test_an_error_backoff_ignores_pokes_but_not_an_urgent_one():
    async def scenario() -> tuple[bool, bool]:
        wake = Wake()
        sleeper = asyncio.ensure_future(wake.sleep(30, pokeable=False))
        await asyncio.sleep(0.05)
        wake.set()  # a pod event: no hammering of a failing API
        await asyncio.sleep(0.05)
        ignored = not sleeper.done()
        wake.set(urgent=True)  # the job is being deleted
        await asyncio.wait_for(sleeper, 5)
        # An urgent poke also ends every later sleep: the loop's next pass ends it.
        await asyncio.wait_for(wake.sleep(30, pokeable=False), 1)
        return ignored, wake.is_set()

    assert run(scenario()) == (True, True)


def test_a_sleep_holds_one_future_and_no_task_and_leaves_no_timer():
    async def scenario() -> tuple[int, int, int]:
        wake = Wake()
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(wake.sleep(30))
        await asyncio.sleep(0.01)
        tasks = len(asyncio.all_tasks()) - 2  # this scenario and the sleeper itself
        timers = len(loop._scheduled)  # type: ignore[attr-defined]
        sleeper.cancel()  # kopf's stop on shutdown
        await asyncio.gather(sleeper, return_exceptions=True)
        live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        return tasks, timers, len(live)

    assert run(scenario()) == (0, 1, 0)
