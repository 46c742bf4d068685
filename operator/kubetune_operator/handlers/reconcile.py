"""Follow one FineTuneJob: observe -> decide (pure) -> act through the API module.

Design: one kopf daemon per FineTuneJob runs `follow()`, the only writer of that job's
status (no races between handlers). It reconciles at once, then sleeps until either
the reconcile interval passes (progress scraping, deadlines, backoff) or it is poked:
Job and Pod events (server-side filtered by our managed-by label), spec updates and the
job's deletion poke it through `memo.pokes` (wake.py), so reactions do not wait for the
interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
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
    ApiError,
    ForeignObject,
    KubeClient,
)
from ..listing import Listings
from ..memcheck import refusal
from ..metrics import OperatorMetrics
from ..observe import observe
from ..pacing import Pace, classify, may_defer, scrape_interval, should_write
from ..progress import RateSample, parse_metrics, to_progress
from ..status import dump_status, merge_patch, parse_time
from ..throttle import Deferred
from ..wake import Wake
from . import children, view

STOP = -1.0  # follow() ends: the FineTuneJob is gone or being deleted
IDLE = math.inf  # nothing to wait for (finished, no TTL): sleep until poked (a spec change)
# Longest wait between looks while the API keeps failing (timeouts, 5xx): the backoff
# doubles from the reconcile interval up to this.
MAX_ERROR_BACKOFF = 60.0


async def follow(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    stopped: Any,
    logger: logging.Logger,
    src: view.Sources | None = None,
) -> None:
    src = src or view.Sources()
    config: OperatorConfig = memo.config
    wake: Wake = memo.pokes.setdefault((namespace, name), Wake())
    errors = 0  # consecutive failed reconciles: the backoff before the next one
    try:
        while not stopped:
            wake.clear()
            try:
                requeue = await reconcile_once(memo, namespace, name, logger, src)
                errors = 0
            except ApiError as exc:
                # Transient API trouble (a permanent refusal of a child is handled inside):
                # log and look again later with backoff (counted in api_errors).
                errors += 1
                requeue = min(
                    config.reconcile_interval * 2 ** (errors - 1),
                    max(MAX_ERROR_BACKOFF, config.reconcile_interval),
                )
                logger.warning(
                    f"reconcile of {namespace}/{name} failed: {exc}; again in {requeue:g}s"
                )
            if requeue == STOP:
                return
            if requeue is None:
                wait: float | None = config.reconcile_interval
            elif requeue == IDLE:
                wait = None
            elif errors:
                wait = requeue
            else:
                wait = min(max(requeue, 0.05), config.reconcile_interval)
            try:
                # While the API fails, events do not cut the backoff short (no hammering);
                # a deletion does (spec_event).
                await wake.sleep(wait, pokeable=not errors)
            except asyncio.CancelledError:
                # The sleep does not watch kopf's `stopped` (wake.py): on shutdown kopf sets
                # it, then cancels the daemon. That is this loop's normal end, not an error.
                if not stopped:
                    raise
                return
    finally:
        memo.pokes.pop((namespace, name), None)
        memo.accepted.pop((namespace, name), None)
        memo.preflights.pop((namespace, name), None)
        view.written(memo).forget(namespace, name)
        memo.paces.pop((namespace, name), None)
        for key in [k for k in memo.rates if k[:2] == (namespace, name)]:
            del memo.rates[key]


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
    first = memo.rates.setdefault((ns, name, attempt), RateSample(now, step))
    step_seconds = (now - first.t) / (step - first.step) if step > first.step else None
    pace.next_scrape = now + scrape_interval(step_seconds, config.status_interval)
    return to_progress(values, now, first)


async def _execute(
    memo: kopf.Memo,
    body: dict[str, Any],
    plan: Plan,
    accepted: dict[str, Any] | None,
    logger: Any,
) -> None:
    client: KubeClient = memo.client
    config: OperatorConfig = memo.config
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
    if plan.status_changed and should_write(patch, pace, now, config.status_interval):
        # Progress alone gives way to creations: the next look writes it (not paced yet),
        # unless the job's status has waited for too long already.
        defer = classify(patch) == "progress" and may_defer(pace, now, config.status_interval)
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
