"""One pass over one FineTuneJob: observe -> decide (pure) -> act through the API module.

The scheduler (schedule.py) runs the passes: one task for every job, never two passes of a
job at once, so a pass is the only writer of its job's status (no races between handlers).
A job is due again at the reconcile interval (progress scraping, deadlines, backoff) or at
once when poked: Job and Pod events (our informers, server-side filtered by our managed-by
label), spec updates and the job's deletion poke it (setup.py), so reactions do not wait
for the interval. `run_pass` reads what the scheduler holds (the trimmed FineTuneJob) and
the informers' two stores; `forget` drops the job's state when its entry goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from kubetune_api import constants as c
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import strip_spec_credentials

from .. import builders as b
from ..config import OperatorConfig
from ..decide import Inputs, Plan, decide
from ..k8s import (
    CONFIGMAPS,
    FINETUNEJOBS,
    JOBS,
    ForeignObject,
    KubeClient,
)
from ..listing import Listings
from ..memcheck import refusal
from ..metrics import OperatorMetrics
from ..observe import observe
from ..pacing import (
    Pace,
    classify,
    may_defer,
    progress_interval,
    scrape_interval,
    should_write,
)
from ..progress import RateSample, parse_metrics, to_progress
from ..schedule import IDLE, STOP, Entry, step_aside
from ..status import dump_status, merge_patch, parse_time
from ..throttle import Deferred
from . import children, view


async def run_pass(memo: kopf.Memo, entry: Entry, logger: Any) -> float | None:
    """The scheduler's pass over one job: its entry's body, the informers' stores."""
    jobs, pods = memo.stores
    src = view.Sources(body=entry.body, jobs=jobs, pods=pods)
    return await reconcile_once(memo, entry.key[0], entry.key[1], logger, src)


def forget(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Everything kept about a job whose entry the scheduler drops (STOP)."""
    memo.accepted.pop((namespace, name), None)
    memo.preflights.pop((namespace, name), None)
    view.written(memo).forget(namespace, name)
    memo.paces.pop((namespace, name), None)  # with its rate sample


async def reconcile_once(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    logger: logging.Logger,
    src: view.Sources | None = None,
) -> float | None:
    client: KubeClient = memo.client
    metrics: OperatorMetrics = memo.metrics
    started = time.monotonic()
    src = src or view.Sources()
    body = await view.finetunejob(memo, src, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return STOP
    meta = body["metadata"]
    raw_status = body.get("status") or {}
    # A job without an attempt has no ConfigMap of ours yet (the status is written first).
    accepted = (
        await accepted_spec(memo, client, namespace, name, meta["uid"])
        if raw_status.get("attempt")
        else None
    )
    spec = body.get("spec") or {}
    obs = progress = conflict = None
    attempt = int(raw_status.get("attempt") or 0)
    if attempt and raw_status.get("phase") not in c.Phase.FINISHED:
        job, pods, conflict = await view.attempt(memo, src, namespace, name, attempt, meta["uid"])
        obs = None if conflict else observe(job, pods)
        if obs is not None and obs.running and obs.pod0_ip:
            port = int(((accepted or spec).get("metrics") or {}).get("port", 9400))
            progress = await _progress(
                memo, client, namespace, name, attempt, obs.pod0_ip, port, logger
            )
    inputs = Inputs(
        name=name, namespace=namespace, generation=int(meta.get("generation") or 1),
        spec=spec, accepted_spec=accepted, status=raw_status, observation=obs,
        progress=progress, now=datetime.now(UTC), conflict=conflict,
        policy=memo.config.policy,
    )  # fmt: skip
    plan = decide(inputs)
    if plan.accept_spec is not None and plan.job is not None:  # valid, allowed, not accepted
        refused = await _memory_preflight(memo, plan.job, namespace, name, meta, logger)
        if refused:
            inputs = dataclasses.replace(inputs, memory_refusal=refused)
            plan = decide(inputs)
    if plan.ensure_attempt is not None and conflict is None:
        multi = plan.job is None or b.needs_service(plan.job)
        conflict = await children.foreign_child(
            memo, src, raw_status, namespace, name, meta["uid"], plan.ensure_attempt, multi
        )
        if conflict:
            inputs = dataclasses.replace(inputs, conflict=conflict)
            plan = decide(inputs)
    try:
        if plan.ensure_attempt is None:
            await _execute(memo, body, plan, accepted, logger)
        else:
            # Depth first: a few jobs at a time go through status + children, so each job's
            # requests are not queued behind every other new job's (breadth first, the
            # --qps cap would give every Job of a burst only at the burst's end).
            # Queued creations also hold back running jobs' progress writes (throttle.py).
            # The wait for a creation slot is bounded by that semaphore, not the scheduler's.
            step_aside()
            with client.bucket.creation():
                async with view.creating(memo):
                    await _execute(memo, body, plan, accepted, logger)
    except (ForeignObject, children.ChildRejected) as exc:
        # A child's name is taken by an object not ours (its create said 409): the status
        # says so and nothing is created until it goes (foreign_child looks again). Or the
        # API server refused a child for good (invalid, forbidden): retrying cannot help, so
        # the attempt ends as Failed with the server's own words, now.
        logger.warning(f"{namespace}/{name}: {exc}")
        metrics.cache_misses.labels("finetunejob").inc()  # rare: read what we just wrote
        fresh = await client.get(FINETUNEJOBS, namespace, name)
        if fresh is None:
            return STOP
        why = {"conflict": str(exc)} if isinstance(exc, ForeignObject) else {"rejected": str(exc)}
        inputs = dataclasses.replace(inputs, status=fresh.get("status") or {}, **why)
        plan = decide(inputs)
        await _execute(memo, fresh, plan, accepted, logger)
    metrics.reconcile_seconds.observe(time.monotonic() - started)
    entered = metrics.phase_entered(plan.status, meta.get("creationTimestamp"))
    metrics.set_phase(namespace, name, plan.status.phase, entered)
    if plan.delete_self:
        return STOP
    if plan.finished and plan.requeue_after is None:
        return IDLE
    return plan.requeue_after


async def accepted_spec(
    memo: kopf.Memo, client: KubeClient, ns: str, name: str, uid: str
) -> dict[str, Any] | None:
    """The spec the job was accepted with, from its ConfigMap (read once, then remembered)."""
    known = memo.accepted.get((ns, name))
    if known is not None and known[0] == uid:
        return json.loads(known[1])  # type: ignore[no-any-return]
    # An operator start: the namespace's one listing answers (listing.py), else a GET.
    listings: Listings = memo.listings
    spec = await listings.accepted(client, ns, name, uid)
    if spec is None:
        memo.metrics.cache_misses.labels("configmap").inc()
        spec = b.accepted_spec(await client.get(CONFIGMAPS, ns, b.configmap_name(name)), uid)
    if spec is not None:
        remember_accepted(memo, ns, name, uid, spec)
    return spec


def remember_accepted(memo: kopf.Memo, ns: str, name: str, uid: str, spec: dict[str, Any]) -> None:
    """Kept as compact JSON, parsed on each look: ~0.7 KiB a job instead of ~4.8 KiB of
    dicts and strings (issue 21); the parse costs ~15 µs a reconcile."""
    memo.accepted[(ns, name)] = (uid, json.dumps(spec, separators=(",", ":")))


async def _memory_preflight(
    memo: kopf.Memo,
    job: FineTuneJob,
    ns: str,
    name: str,
    meta: dict[str, Any],
    logger: logging.Logger,
) -> str | None:
    """memcheck.refusal for a spec not yet accepted, once per generation: a job that stays
    unaccepted (suspended from the start, a child conflict) is reconciled every interval,
    and config.json (an S3 GET) must not be read again each time."""
    key, seen = (ns, name), (meta["uid"], meta.get("generation"))
    known = memo.preflights.get(key)
    if known is not None and known[0] == seen:
        return known[1]
    config: OperatorConfig = memo.config
    verdict = await refusal(job, config.model_config_roots, config.s3_endpoint_allow, logger)
    memo.preflights[key] = (seen, verdict)
    return verdict


async def _progress(
    memo: kopf.Memo,
    client: KubeClient,
    ns: str,
    name: str,
    attempt: int,
    ip: str,
    port: int,
    logger: logging.Logger,
) -> Any:
    """Rank 0's progress if a scrape is due (pacing.py), else None (the status keeps its)."""
    config: OperatorConfig = memo.config
    pace = memo.paces.setdefault((ns, name), Pace(last_write=time.monotonic()))
    now = time.monotonic()
    if now < pace.next_scrape:
        return None
    text = await client.scrape(ip, port)
    values = parse_metrics(text, logger) if text else {}
    if not values:
        pace.next_scrape = now + config.reconcile_interval
        return None
    step = int(values.get("step", 0))
    if pace.rate is None or pace.rate_attempt != attempt:  # a new attempt starts its own
        pace.rate, pace.rate_attempt = RateSample(now, step), attempt
    first = pace.rate
    step_seconds = (now - first.t) / (step - first.step) if step > first.step else None
    pace.next_scrape = now + scrape_interval(step_seconds, _progress_interval(memo))
    return to_progress(values, now, first)


def _progress_interval(memo: kopf.Memo) -> float:
    """--status-interval, stretched so the running jobs' progress takes a bounded share of
    --qps (pacing.progress_interval)."""
    config: OperatorConfig = memo.config
    running = memo.metrics.count(c.Phase.RUNNING)
    return progress_interval(config.status_interval, running, config.api_qps)


async def _execute(
    memo: kopf.Memo,
    body: dict[str, Any],
    plan: Plan,
    accepted: dict[str, Any] | None,
    logger: Any,
) -> None:
    client: KubeClient = memo.client
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    owner = b.Owner(name=name, namespace=ns, uid=meta["uid"])
    # Until its ConfigMap exists a job has no accepted spec; decide() accepts the current one.
    accepted = plan.accept_spec if plan.accept_spec is not None else accepted
    # Status first: once the next attempt number is stored, a crash in between cannot
    # bring the old attempt back; stale attempts are swept before a Job is created.
    patch = merge_patch(body.get("status") or {}, dump_status(plan.status))
    pace = memo.paces.setdefault((ns, name), Pace(last_write=time.monotonic()))
    now = time.monotonic()
    interval = _progress_interval(memo)
    if plan.status_changed and should_write(patch, pace, now, interval):
        # Progress alone gives way to creations: the next look writes it (not paced yet),
        # unless the job's status has waited for too long already.
        defer = classify(patch) == "progress" and may_defer(pace, now, interval)
        try:
            fresh = await client.patch(
                FINETUNEJOBS, ns, name, {"status": patch}, "status", deferrable=defer
            )
        except Deferred:
            memo.metrics.api_deferred.inc()
        else:
            pace.last_write = time.monotonic()
            view.written(memo).remember(ns, name, fresh)
    for attempt in plan.delete_attempts:
        await children.delete_attempt(client, ns, name, attempt, owner.uid)
    if plan.ensure_attempt is not None and plan.job is not None:
        # Attempt 1 has no earlier attempt to sweep: no list for a new job.
        stale = await client.list(JOBS, ns, {c.LABEL_JOB: name}) if plan.ensure_attempt > 1 else []
        for job in stale:
            other = job["metadata"].get("labels", {}).get(c.LABEL_ATTEMPT)
            if other != str(plan.ensure_attempt) and other and other.isdigit():
                await children.delete_attempt(client, ns, name, int(other), owner.uid)
        assert accepted is not None  # a job to start was parsed from an accepted spec
        # Labels are live metadata (the spec is what was accepted): Kueue's priority class.
        plan.job.metadata.labels = dict(meta.get("labels") or {})
        # The credentials the spec's URLs carry go to the job's own Secret, nowhere else.
        _, credentials = strip_spec_credentials(body.get("spec") or {})
        await children.ensure_children(memo, plan, owner, accepted, credentials)
        remember_accepted(memo, ns, name, owner.uid, accepted)
    for ev in plan.events:
        kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message[:1000])
    if plan.counted_restart or any(e.reason == c.Reason.PREEMPTED for e in plan.events):
        reason = "preempted" if not plan.counted_restart else "retryable"
        memo.metrics.restarts.labels(ns, name, reason).inc()
    if plan.finished and plan.events and plan.status.start_time:
        start = parse_time(plan.status.start_time)
        if start is not None:
            elapsed = (datetime.now(UTC) - start).total_seconds()
            memo.metrics.duration.labels(plan.status.phase).observe(elapsed)
    if plan.delete_self:
        logger.info(f"ttlSecondsAfterFinished passed: deleting {ns}/{name}")
        await client.delete(FINETUNEJOBS, ns, name)
