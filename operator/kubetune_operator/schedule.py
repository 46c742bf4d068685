"""One task follows every FineTuneJob: a heap of due times, a bounded number of passes at once.

Why not a kopf daemon per FineTuneJob (the design until issue 21): a daemon is a task with
~3.5 KiB of kopf frames around its loop, a stopper (a threading.Event with its Condition and
deque, an asyncio.Event), and it makes kopf keep a live body of its object: ~7 KiB per job
that the collector tracks, plus the temporaries they leave, paid by every job all its life
while it mostly sleeps. Here a job is one slotted `Entry` (its trimmed body, when it is due,
its error count, its poke flags); a task exists only while a pass runs.

What a job's daemon loop did, the scheduler does:
- a job is reconciled at once when it appears, then when its pass asks: None -> after the
  reconcile interval, IDLE -> only when poked, a number -> after that long (at most the
  interval), STOP -> the entry is dropped and `forget` clears the job's state;
- a poke (an event of its Job or pods, a new spec generation) makes it due now; a poke during
  its pass runs one more pass after it: a job never has two passes at once;
- a transient error (`transient`: the API's) backs off, doubling from the interval up to
  MAX_ERROR_BACKOFF; ordinary pokes do not cut that wait short (no hammering of a failing
  API), an urgent one (the job's deletion) does;
- anything else raised is logged with its traceback and the job looked at again in 10 s,
  as kopf did with a failed daemon: one job's bug never stops the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, FineTuneJob name)
Logger = logging.Logger | logging.LoggerAdapter[Any]

STOP = -1.0  # the job is gone or being deleted: its entry goes
IDLE = math.inf  # nothing to wait for (finished, no TTL): only a poke (a spec change) wakes it
# Longest wait between looks while the API keeps failing (timeouts, 5xx): the backoff
# doubles from the reconcile interval up to this.
MAX_ERROR_BACKOFF = 60.0
# After an unexpected exception (a bug): kopf's daemon backoff was the same.
RETRY_AFTER_BUG = 10.0
# Passes at once. A running job's pass sends no API request and takes ~1 ms of CPU; what it
# awaits is a scrape of rank 0 (up to its timeout when a pod is gone). 64 keeps the loop
# busy through slow scrapes while bounding the temporaries of passes in flight (~10-30 KiB
# each), which are what a restart with every job due at once would otherwise pile up.
# Creations are bounded on their own (view.CREATING_AT_ONCE) and wait outside this bound.
AT_ONCE = 64


class Entry:
    """One job as the scheduler knows it."""

    __slots__ = ("again", "backoff", "body", "due", "errors", "gone", "key", "running",
                 "slot", "urgent")  # fmt: skip

    def __init__(self, key: Key, body: Mapping[str, Any]) -> None:
        self.key = key
        self.body = body  # the latest FineTuneJob, trimmed to what a pass reads
        self.due = math.inf  # monotonic time of its next pass (inf: when poked)
        self.errors = 0  # consecutive transient failures: the backoff's exponent
        self.backoff = False  # waiting after a failure: only an urgent poke cuts it
        self.running = False
        self.again = False  # poked during its pass: one more pass after it
        self.urgent = False  # poked by its deletion: the next pass comes now, even in a backoff
        self.gone = False  # its FineTuneJob was deleted: the next pass ends it
        self.slot = False  # its running pass holds one of the AT_ONCE slots


Reconcile = Callable[[Entry, Logger], Awaitable[float | None]]

# The scheduler and entry of the pass running in this task (step_aside).
_CURRENT: contextvars.ContextVar[tuple[Scheduler, Entry]] = contextvars.ContextVar("pass")


def step_aside() -> None:
    """The running pass is about to wait for something bounded on its own (a creation slot):
    its scheduler slot goes to the next due job meanwhile, so a burst of new jobs does not
    hold back the passes of running ones. No-op outside a pass."""
    current = _CURRENT.get(None)
    if current is not None:
        current[0]._release(current[1])


class Scheduler:
    """`upsert` and `poke` are called from kopf's event handlers; `start` and `stop` from the
    operator's startup and cleanup."""

    def __init__(
        self,
        reconcile: Reconcile,
        forget: Callable[[Key], None],
        logger_for: Callable[[Entry], Logger],
        *,
        interval: float,
        transient: tuple[type[BaseException], ...] = (),
        at_once: int = AT_ONCE,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reconcile = reconcile
        self._forget = forget
        self._ready = ready  # awaited before the first pass: the children's caches are warm
        self._logger_for = logger_for
        self.interval = interval
        self.transient = transient
        self.entries: dict[Key, Entry] = {}
        # (due, key); an item whose due differs from its entry's is stale and skipped.
        self._heap: list[tuple[float, Key]] = []
        self._slots = asyncio.Semaphore(at_once)
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._passes: set[asyncio.Task[None]] = set()
        # kopf's Event poster (kopf.event: a pass's Events) is found through ContextVars that
        # kopf sets only in the task handling an object, not in the startup handler's:
        # passes run in a copy of the context of the first upsert (an event handler).
        self._context: contextvars.Context | None = None

    # -- called by the operator ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kubetune-scheduler")
        self._task.add_done_callback(_report_end)

    async def stop(self) -> None:
        """Cancel the loop and the passes in flight (shutdown; the operator's state goes too)."""
        tasks = [t for t in (self._task, *self._passes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def upsert(self, key: Key, body: Mapping[str, Any]) -> None:
        """A FineTuneJob seen (listed, added, modified): a new one is due now."""
        if self._context is None:
            self._context = contextvars.copy_context()
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(key, body)
            self._at(entry, time.monotonic())
            return
        if not entry.running and _uid(entry.body) != _uid(body):
            # Deleted and created again before its pass ended the old one: start afresh
            # (a running pass sees the new uid when it ends: `_pass`).
            self._forget(key)
            entry.errors, entry.backoff = 0, False
            self._at(entry, time.monotonic())
        entry.body = body
        entry.gone = False

    def delete(self, key: Key) -> None:
        """Its FineTuneJob is gone from the API: the next pass (now) ends it."""
        entry = self.entries.get(key)
        if entry is not None:
            entry.gone = True
            self.poke(key, urgent=True)

    def poke(self, key: Key, urgent: bool = False) -> None:
        """Reconcile the job now (`urgent`: even during an error backoff)."""
        entry = self.entries.get(key)
        if entry is None:
            return
        entry.urgent = entry.urgent or urgent
        if entry.running:
            entry.again = True
        elif entry.urgent or not entry.backoff:
            self._at(entry, time.monotonic())

    def in_flight(self) -> int:
        return len(self._passes)

    def alive(self) -> bool:
        """Its loop runs (started, not ended): false means no job is followed any more."""
        return self._task is not None and not self._task.done()

    # -- the loop -------------------------------------------------------------------------

    def _at(self, entry: Entry, when: float) -> None:
        """Make the entry due at `when` if that is sooner than it is now."""
        if when >= entry.due or entry.running:
            return
        entry.due = when
        if math.isinf(when):
            return
        item = (when, entry.key)
        heapq.heappush(self._heap, item)
        if self._heap[0] is item and self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        # Every reschedule earlier than planned leaves a stale item: rebuild now and then.
        if len(self._heap) > 2 * len(self.entries) + 64:
            self._heap = [(e.due, e.key) for e in self.entries.values() if e.due < math.inf]
            heapq.heapify(self._heap)

    async def _run(self) -> None:
        if self._ready is not None:
            await self._ready()
        while True:
            await self._slots.acquire()
            try:
                entry = await self._next()
            except BaseException:
                self._slots.release()
                raise
            entry.running, entry.due, entry.again, entry.slot = True, math.inf, False, True
            context = self._context.copy() if self._context is not None else None
            task = asyncio.create_task(self._pass(entry), context=context)
            self._passes.add(task)
            task.add_done_callback(self._passes.discard)

    async def _next(self) -> Entry:
        """The next due entry, once it is due."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = None
            while self._heap:
                due, key = self._heap[0]
                entry = self.entries.get(key)
                if entry is None or entry.due != due:
                    heapq.heappop(self._heap)  # stale: rescheduled, running or dropped
                    continue
                timeout = due - time.monotonic()
                if timeout <= 0:
                    heapq.heappop(self._heap)
                    return entry
                break
            self._wakeup = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _wake, self._wakeup)
            try:
                await self._wakeup
            finally:
                self._wakeup = None
                if timer is not None:
                    timer.cancel()

    def _release(self, entry: Entry) -> None:
        if entry.slot:
            entry.slot = False
            self._slots.release()

    async def _pass(self, entry: Entry) -> None:
        _CURRENT.set((self, entry))
        entry.urgent = False  # this pass answers it
        uid = _uid(entry.body)
        logger = self._logger_for(entry)
        failed: float | None = None  # the wait after a failure
        try:
            requeue = STOP if entry.gone else await self._reconcile(entry, logger)
        except self.transient as exc:
            entry.errors += 1
            requeue = None
            failed = min(
                self.interval * 2 ** (entry.errors - 1), max(MAX_ERROR_BACKOFF, self.interval)
            )
            logger.warning(f"reconcile of {_name(entry)} failed: {exc}; again in {failed:g}s")
        except Exception:
            requeue, failed = None, RETRY_AFTER_BUG
            logger.exception(
                f"reconcile of {_name(entry)} failed unexpectedly; again in {failed:g}s"
            )
        else:
            entry.errors = 0
        finally:
            entry.running = False
            self._release(entry)
        if requeue == STOP:
            self._forget(entry.key)
            # The same name created again meanwhile (another uid): that job starts afresh.
            if entry.gone or _uid(entry.body) == uid:
                if self.entries.get(entry.key) is entry:
                    del self.entries[entry.key]
                return
            entry.errors, failed, requeue = 0, None, 0.0
        entry.backoff = failed is not None
        if failed is not None:
            wait = failed
        elif requeue is None:
            wait = self.interval
        else:
            wait = min(max(requeue, 0.05), self.interval) if requeue != IDLE else IDLE
        if entry.urgent or (entry.again and not entry.backoff):
            wait = 0.0
        entry.again = False
        self._at(entry, time.monotonic() + wait)


def _uid(body: Mapping[str, Any]) -> Any:
    return (body.get("metadata") or {}).get("uid")


def _name(entry: Entry) -> str:
    return f"{entry.key[0]}/{entry.key[1]}"


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("kubetune.schedule").error(
            "the scheduler stopped", exc_info=task.exception()
        )
