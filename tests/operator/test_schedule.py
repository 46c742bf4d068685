"""schedule.Scheduler: one task runs every job's passes (issue 21), with the semantics each
job's kopf daemon had: at once when new, requeue per the pass's answer, pokes, never two
passes of a job at once, error backoff, a bug in one job contained, a bound on passes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from kubetune_operator import schedule
from kubetune_operator.cache import Written, trim_ftj
from kubetune_operator.handlers import reconcile
from kubetune_operator.k8s import ApiError
from kubetune_operator.schedule import IDLE, STOP, Entry, Scheduler

LOG = logging.getLogger("test_schedule")
A, B = ("ns", "a"), ("ns", "b")


def body(name: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid}}


class Fake:
    """A reconcile that records its passes and answers what the test says."""

    def __init__(self, answer: Callable[[Entry], Awaitable[float | None]] | None = None) -> None:
        self.passes: list[tuple[str, float]] = []  # (name, start time)
        self.running: set[tuple[str, str]] = set()
        self.overlap = 0  # a job's pass started while its previous one ran
        self.most = 0  # passes at once, all jobs
        self.forgotten: list[tuple[str, str]] = []
        self.answer = answer

    async def __call__(self, entry: Entry, logger: Any) -> float | None:
        if entry.key in self.running:
            self.overlap += 1
        self.running.add(entry.key)
        self.most = max(self.most, len(self.running))
        self.passes.append((entry.key[1], time.monotonic()))
        try:
            if self.answer is not None:
                return await self.answer(entry)
            return IDLE
        finally:
            self.running.discard(entry.key)

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.passes if n == name)

    def scheduler(self, interval: float = 10.0, **kw: Any) -> Scheduler:
        return Scheduler(self, self.forgotten.append, lambda _: LOG, interval=interval, **kw)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.005)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_new_job_is_reconciled_at_once_then_per_the_passes_answer():
    async def scenario() -> Fake:
        answers = {"a": None, "b": 0.1, "c": IDLE}
        fake = Fake(lambda e: _const(answers[e.key[1]]))
        s = fake.scheduler(interval=0.3)
        s.start()
        for name in answers:
            s.upsert(("ns", name), body(name))
        await until(lambda: fake.count("a") >= 3 and fake.count("b") >= 4)
        await s.stop()
        return fake

    fake = run(scenario())
    # Never sooner than asked (a slow machine may only make passes later): the interval for
    # None (0.3 s), the pass's own answer (0.1 s); IDLE: only a poke brings it back.
    assert min(gaps(fake, "a")) >= 0.3 and min(gaps(fake, "b")) >= 0.1
    assert fake.count("c") == 1


def gaps(fake: Fake, name: str) -> list[float]:
    """Seconds between one pass of the job and the next."""
    times = [t for n, t in fake.passes if n == name]
    return [b - a for a, b in itertools.pairwise(times)]


async def _const(value: float | None) -> float | None:
    return value


def test_a_poke_during_a_pass_runs_one_more_pass_after_it_never_two_at_once():
    async def scenario() -> Fake:
        gate = asyncio.Event()

        async def slow(entry: Entry) -> float | None:
            if len(fake.passes) == 1:
                await gate.wait()
            return IDLE

        fake = Fake(slow)
        s = fake.scheduler()
        s.start()
        s.upsert(A, body("a"))
        await until(lambda: len(fake.passes) == 1)
        for _ in range(5):  # several events during the pass: one more pass, not five
            s.poke(A)
            s.upsert(A, body("a"))
        await asyncio.sleep(0.05)
        assert len(fake.passes) == 1  # not while the first one runs
        gate.set()
        await until(lambda: len(fake.passes) == 2)
        await asyncio.sleep(0.1)
        await s.stop()
        return fake

    fake = run(scenario())
    assert fake.count("a") == 2 and fake.overlap == 0


def test_an_error_backoff_ignores_pokes_but_not_an_urgent_one(caplog):
    async def scenario() -> tuple[int, int, Entry]:
        async def failing(entry: Entry) -> float | None:
            if len(fake.passes) == 1:
                raise ApiError(503, "unavailable")
            return IDLE

        fake = Fake(failing)
        s = fake.scheduler(interval=30.0, transient=(ApiError,))
        s.start()
        s.upsert(A, body("a"))
        await until(lambda: not fake.running and s.entries[A].backoff)
        entry = s.entries[A]
        s.poke(A)  # a pod event: no hammering of a failing API
        await asyncio.sleep(0.1)
        ignored = fake.count("a")
        s.poke(A, urgent=True)  # the job is being deleted
        await until(lambda: fake.count("a") == 2)
        await asyncio.sleep(0.05)
        await s.stop()
        return ignored, fake.count("a"), entry

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        ignored, total, entry = run(scenario())
    assert ignored == 1 and total == 2
    assert entry.errors == 0 and not entry.backoff  # the pass after it succeeded
    assert "failed: HTTP 503: unavailable; again in 30s" in caplog.text


def failing_job(interval: float) -> tuple[Fake, Scheduler]:
    """A started scheduler whose one job (A) fails with an API error at every pass."""

    async def failing(entry: Entry) -> float | None:
        raise ApiError(500, "boom")

    fake = Fake(failing)
    s = fake.scheduler(interval=interval, transient=(ApiError,))
    s.start()
    s.upsert(A, body("a"))
    return fake, s


def test_the_error_backoff_doubles_up_to_its_cap():
    async def scenario() -> list[float]:
        fake, s = failing_job(interval=20.0)
        waits = []
        for n in range(1, 5):
            await until(
                lambda n=n: fake.count("a") == n and not fake.running and s.entries[A].backoff
            )
            waits.append(round(s.entries[A].due - time.monotonic()))
            s.poke(A, urgent=True)  # due now: the test does not wait a minute
        await s.stop()
        return waits

    assert run(scenario()) == [20, 40, 60, 60]


def test_an_exception_in_one_job_does_not_stop_the_others_and_it_is_retried(monkeypatch, caplog):
    monkeypatch.setattr(schedule, "RETRY_AFTER_BUG", 0.2)

    async def scenario() -> Fake:
        async def buggy(entry: Entry) -> float | None:
            if entry.key == A:
                raise KeyError("a bug")
            return 0.05

        fake = Fake(buggy)
        s = fake.scheduler(interval=1.0)
        s.start()
        s.upsert(A, body("a"))
        s.upsert(B, body("b"))
        await until(lambda: fake.count("a") >= 2 and fake.count("b") >= 5)
        assert s.alive()  # the scheduler lives on
        await s.stop()
        return fake

    with caplog.at_level(logging.ERROR, logger=LOG.name):
        fake = run(scenario())
    # b every 0.05 s all along (the `until` above); a retried, never sooner than 0.2 s.
    assert min(gaps(fake, "a")) >= 0.2
    assert "failed unexpectedly; again in 0.2s" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text  # with its traceback


def test_stop_drops_the_entry_and_forgets_the_jobs_state():
    memo = kopf.Memo(
        accepted={A: ("u1", "{}"), B: ("u2", "{}")},
        preflights={A: (("u1", 1), None)},
        paces={A: object(), B: object()},
        written=Written(),
    )
    memo.written.ftjs[A] = {"status": {}}
    memo.written.jobs[("ns", "a", "1")] = {}

    async def scenario() -> Scheduler:
        async def deleting(entry: Entry) -> float | None:
            return STOP if entry.key == A else IDLE

        s = Scheduler(
            Fake(deleting),
            lambda key: reconcile.forget(memo, *key),
            lambda _: LOG,
            interval=10.0,
        )
        s.start()
        s.upsert(A, body("a"))
        s.upsert(B, body("b"))
        await until(lambda: A not in s.entries and s.in_flight() == 0)
        await s.stop()
        return s

    s = run(scenario())
    assert set(s.entries) == {B}
    assert set(memo.accepted) == {B} and not memo.preflights and set(memo.paces) == {B}
    assert not memo.written.ftjs and not memo.written.jobs


def test_a_deleted_job_ends_without_a_reconcile_even_in_a_backoff():
    async def scenario() -> Fake:
        fake, s = failing_job(interval=60.0)
        await until(lambda: A in s.entries and s.entries[A].backoff)
        s.delete(A)  # the DELETED event
        await until(lambda: A not in s.entries)
        await s.stop()
        return fake

    fake = run(scenario())
    assert fake.count("a") == 1 and fake.forgotten == [A]


def test_a_job_deleted_and_created_again_starts_afresh():
    async def scenario() -> Fake:
        fake = Fake()
        s = fake.scheduler()
        s.start()
        s.upsert(A, body("a", uid="old"))
        await until(lambda: fake.count("a") == 1 and not fake.running)
        s.upsert(A, body("a", uid="new"))  # its DELETED event was missed (a watch restart)
        await until(lambda: fake.count("a") == 2)
        await s.stop()
        return fake

    fake = run(scenario())
    assert fake.forgotten == [A]  # the old job's state is not the new one's


def test_at_most_at_once_passes_run_and_a_pass_that_steps_aside_frees_its_slot():
    async def scenario() -> tuple[int, int]:
        async def busy(entry: Entry) -> float | None:
            await asyncio.sleep(0.02)
            return IDLE

        fake = Fake(busy)
        s = fake.scheduler(at_once=3)
        s.start()
        for i in range(20):
            s.upsert(("ns", f"j{i}"), body(f"j{i}"))
        await until(lambda: len(fake.passes) == 20 and not fake.running)
        bounded = fake.most

        # Three passes wait for something bounded on its own (a creation slot) after
        # stepping aside: the others still get through.
        held = asyncio.Event()

        async def creating(entry: Entry) -> float | None:
            if entry.key[1].startswith("new"):
                schedule.step_aside()
                await held.wait()
            return IDLE

        fake.answer = creating
        for i in range(3):
            s.upsert(("ns", f"new{i}"), body(f"new{i}"))
        await until(lambda: len(fake.running) == 3)
        for i in range(20):
            s.poke(("ns", f"j{i}"))
        await until(lambda: len(fake.passes) == 43)
        held.set()
        await until(lambda: not fake.running)
        await s.stop()
        return bounded, len(fake.passes)

    bounded, passes = run(scenario())
    assert bounded == 3 and passes == 43


def test_stop_cancels_the_passes_in_flight():
    async def scenario() -> tuple[bool, int]:
        async def forever(entry: Entry) -> float | None:
            await asyncio.Event().wait()
            return None

        fake = Fake(forever)
        s = fake.scheduler()
        s.start()
        s.upsert(A, body("a"))
        await until(lambda: fake.running)
        await s.stop()
        return s._task is not None and s._task.done(), s.in_flight()

    assert run(scenario()) == (True, 0)


def test_the_kept_finetunejob_is_trimmed_to_what_a_pass_reads():
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {
            "name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
            "generation": 2, "creationTimestamp": "t", "labels": {"team": "x"},
            "annotations": {"kubetune.io/delete": "{}"}, "finalizers": ["kubetune.io/f"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"model": {"base": "m"}},
        "status": {"phase": "Running"},
    }  # fmt: skip
    kept = trim_ftj(doc)
    assert kept["metadata"] == {
        "name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
        "generation": 2, "creationTimestamp": "t", "labels": {"team": "x"},
    }  # fmt: skip
    assert kept["spec"] == doc["spec"] and kept["status"] == doc["status"]
    assert (kept["apiVersion"], kept["kind"]) == ("kubetune.io/v1alpha1", "FineTuneJob")


def test_a_poke_makes_a_waiting_job_due_now():
    async def scenario() -> tuple[float, float]:
        fake = Fake(lambda e: _const(None))
        s = fake.scheduler(interval=30.0)
        s.start()
        s.upsert(A, body("a"))
        await until(lambda: fake.count("a") == 1 and not fake.running)
        due = s.entries[A].due  # 30 s away
        s.poke(A)
        await until(lambda: fake.count("a") == 2)
        await s.stop()
        return fake.passes[1][1], due

    second, due = run(scenario())
    assert second < due - 25  # made due by the poke, not by the interval


def test_the_liveness_probe_fails_once_the_scheduler_loop_is_not_running():
    from kubetune_operator.handlers.setup import scheduler_health

    async def scenario() -> list[object]:
        fake = Fake()
        s = fake.scheduler()
        memo = kopf.Memo()
        memo.scheduler = s
        seen: list[object] = []
        with contextlib.suppress(kopf.PermanentError):
            scheduler_health(memo)  # not started yet
            seen.append("healthy before start")
        s.start()
        s.upsert(A, body("a"))
        seen.append(scheduler_health(memo))
        await s.stop()  # the loop ends (as if it had died): the pod must be restarted
        try:
            scheduler_health(memo)
        except kopf.PermanentError as exc:
            seen.append(str(exc))
        return seen

    seen = run(scenario())
    assert seen[0] == {"jobs": 1, "passes": seen[0]["passes"]}  # type: ignore[index]
    assert "no job is followed" in str(seen[1])


def test_no_pass_runs_before_the_caches_are_ready():
    """The children's informers gate every pass (setup.listed): a job known before the
    Jobs and pods are listed waits, so a creation never decides from an empty cache."""

    async def scenario() -> tuple[int, int]:
        ready = asyncio.Event()
        fake = Fake()
        s = fake.scheduler(ready=ready.wait)
        s.start()
        s.upsert(A, body("a"))
        await asyncio.sleep(0.2)
        before = fake.count("a")
        ready.set()
        await until(lambda: fake.count("a") == 1)
        await s.stop()
        return before, fake.count("a")

    assert run(scenario()) == (0, 1)
