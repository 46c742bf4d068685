"""How one job's follow loop sleeps: until poked or until its timeout, on one loop future.

Each of thousands of loops sleeps most of the time, so what a sleep holds is paid per job.
A sleep here is one future plus, with a timeout, one timer handle: no helper tasks, no
asyncio.Event (whose waiter deque alone is ~600 bytes even when empty). Before, each sleep
waited on two helper tasks (the poke's Event.wait and kopf's `stopped.wait()`, which adds a
task of its own): about 6 KiB per job with their coroutines and contexts (issue 21).

kopf's `stopped` flag has no callback to end a sleep with, so what stops a loop wakes it
otherwise: a deletion pokes it from the FineTuneJob's event handler (`urgent`: even during an
error backoff) before kopf sets the flag, and on shutdown kopf cancels the sleeping daemon
right after setting the flag, which `follow` takes as its normal end (reconcile.py).
"""

from __future__ import annotations

import asyncio


class Wake:
    """One job's wake-up: `set()` (an event of the job or its children) ends the current or
    the next sleep, unless it is an error backoff; `set(urgent=True)` ends any sleep."""

    __slots__ = ("_pokeable", "_poked", "_sleep", "_urgent")

    def __init__(self) -> None:
        self._poked = False
        self._urgent = False
        self._sleep: asyncio.Future[None] | None = None
        self._pokeable = True

    def set(self, urgent: bool = False) -> None:
        self._poked = True
        self._urgent = self._urgent or urgent
        if self._sleep is not None and (urgent or self._pokeable) and not self._sleep.done():
            self._sleep.set_result(None)

    def is_set(self) -> bool:
        return self._poked

    def clear(self) -> None:
        """Forget pokes so far (a pass is about to look at everything); urgent ones stay."""
        self._poked = False

    async def sleep(self, timeout: float | None, pokeable: bool = True) -> None:
        """Until poked (if `pokeable`), poked urgently, or `timeout` seconds (None: no limit)."""
        if self._urgent or (pokeable and self._poked):
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _wake, fut)
        self._sleep, self._pokeable = fut, pokeable
        try:
            await fut
        finally:
            self._sleep = None
            if timer is not None:
                timer.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
