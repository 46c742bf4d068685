"""Start-up and clean-up: kopf settings, the API client, operator metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kopf._cogs.structs.references import match_namespace  # kopf's own pattern semantics

from kubetune_api import constants as c

from ..builders import MANAGED_BY
from ..cache import Key, Written, trim_ftj, trim_job, trim_pod
from ..config import OperatorConfig
from ..informer import LIST_PAGE, Informer, Store
from ..k8s import JOBS, PODS, ApiError, KubeClient, login
from ..listing import Listings
from ..metrics import OperatorMetrics
from ..schedule import Entry, Scheduler
from . import reconcile
from .view import CREATING_AT_ONCE

CHILD_LABELS = {c.LABEL_MANAGED_BY: MANAGED_BY}  # what our informers list and watch
_PATTERN = "*?[!,"  # kopf's namespace patterns: globs, negations, comma-separated parts


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger) -> None:
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    memo.config = config
    # Our own finalizer name: `kubectl get -o yaml` tells whose it is, and an uninstalled
    # kubetune is recognisable (kopf's default marker is shared by every kopf operator).
    settings.persistence.finalizer = c.FINALIZER
    # Handler progress (of the deletion handler) lives in annotations under our prefix, so
    # the typed status (the CRD's schema) holds only FineTuneJobStatus fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=c.ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    # End each watch request server-side every 5 minutes and on the client a bit later:
    # long-lived streams silently die behind load balancers; a fresh watch resumes from
    # the last resourceVersion, so nothing is lost.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # The start-up LISTs (every start, restart and failover) in pages, as client-go's pager
    # does: kopf's default asks for every object in one response, which the API server must
    # build and the operator parse whole (5000 FineTuneJobs: tens of MB of JSON at once).
    settings.watching.chunk_size = LIST_PAGE
    # HA is a Lease (leader.py): kopf runs only on the leader, so kopf's own peering (its
    # CRDs, equal priorities pausing every replica) is never used.
    settings.peering.standalone = True
    settings.posting.reporting_component = "kubetune-operator"
    # A retry of a failed handler (API hiccup) after 10 s instead of kopf's default 60 s.
    settings.execution.default_backoff = 10
    memo.metrics = memo.get("metrics") or OperatorMetrics()  # the Lease's client counts too
    memo.accepted = {}  # (namespace, name) -> (uid, accepted spec as JSON): read once per job
    memo.listings = Listings()  # per namespace: the spec ConfigMaps listed at the first miss
    memo.preflights = {}  # (namespace, name) -> ((uid, generation), memory preflight verdict)
    memo.paces = {}  # (namespace, name) -> pacing.Pace: last write, next scrape, ETA sample
    memo.written = Written()  # statuses we wrote that the watch has not shown yet
    # Set here, in the operator's memo: with a plain kopf.Memo (not a SharedMemo) kopf gives
    # each object a shallow copy, so only what exists before the copies is shared.
    memo.creating = asyncio.Semaphore(CREATING_AT_ONCE)  # depth-first creation (reconcile)
    memo.client = KubeClient(
        login(), memo.metrics, timeout=config.api_timeout, qps=config.api_qps,
        burst=config.api_burst,
    )  # fmt: skip
    # The children's stores (Jobs, pods), kept by our informers; a pass reads them
    # (reconcile.run_pass) and runs only once every informer has listed.
    memo.stores = (Store(trim_job), Store(trim_pod))
    memo.informers = informers(memo, config)
    memo.scheduler = scheduler(settings, memo, config)
    memo.scheduler.start()
    if memo.get("metrics_server") is None:  # a standby already serves it (leader.py)
        memo.metrics_server = serve_metrics(memo)
    logger.info("kubetune operator configured (reconcile every %ss)", config.reconcile_interval)


def informers(memo: kopf.Memo, config: OperatorConfig) -> list[tuple[Informer, asyncio.Task[None]]]:
    """A Job and a pod informer per namespace served; one cluster-wide pair, filtered, for
    the whole cluster or kopf's namespace patterns (as kopf matches its own watches)."""
    served = config.namespaces
    patterns = [n for n in served if any(ch in n for ch in _PATTERN)]
    scopes: list[str | None] = [None] if patterns or not served else list(served)

    def keep(ns: str) -> bool:
        return any(match_namespace(ns, p) for p in served)

    out = []
    loop = asyncio.get_running_loop()
    for res, store in zip((JOBS, PODS), memo.stores, strict=True):
        for ns in scopes:
            informer = Informer(
                memo.client,
                res,
                ns,
                store,
                CHILD_LABELS,
                lambda key: poke(memo, key),
                keep if patterns else None,
            )
            task = loop.create_task(informer.run(), name=f"kubetune-informer {informer.where}")
            out.append((informer, task))
    return out


async def listed(memo: kopf.Memo) -> None:
    """Until every informer has its first LIST (the scheduler's gate)."""
    for informer, _ in memo.informers:
        await informer.listed.wait()


def scheduler(
    settings: kopf.OperatorSettings, memo: kopf.Memo, config: OperatorConfig
) -> Scheduler:
    """The one task that runs every job's passes (schedule.py)."""

    def logger_for(entry: Entry) -> kopf.ObjectLogger:
        # kopf's object logger, built for one pass (none is held per job): each record
        # names the job (the `[namespace/name]` prefix, JSON logs' object), as a daemon's
        # logger did; kopf posts log records as Events only with posting.loggers (off).
        return kopf.ObjectLogger(body=entry.body, settings=settings)  # type: ignore[arg-type]

    return Scheduler(
        lambda entry, logger: reconcile.run_pass(memo, entry, logger),
        lambda key: reconcile.forget(memo, *key),
        logger_for,
        interval=config.reconcile_interval,
        transient=(ApiError,),
        ready=lambda: listed(memo),
    )


def scheduler_health(memo: kopf.Memo) -> dict[str, int]:
    """/healthz's part: the scheduler's loop runs, else the probe fails at once (a
    PermanentError: kopf would retry any other error inside the request) and the kubelet
    restarts the pod, instead of an operator that answers but follows no job."""
    running: Scheduler | None = memo.get("scheduler")
    if running is None or not running.alive():
        raise kopf.PermanentError("the scheduler's loop is not running: no job is followed")
    return {"jobs": len(running.entries), "passes": running.in_flight()}


def healthz(memo: kopf.Memo) -> dict[str, Any]:
    """The Lease path's /healthz body (leader.serve_health): a standby (kopf not running
    here, no scheduler) is healthy; the leader is while its scheduler runs."""
    if memo.get("scheduler") is None:
        return {}
    return {"scheduler": scheduler_health(memo)}


def serve_metrics(memo: kopf.Memo) -> Any:
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    if config.metrics_port is None:
        return None
    return memo.metrics.serve(config.metrics_port, config.metrics_addr)


async def shutdown(memo: kopf.Memo) -> None:
    running: Scheduler | None = memo.get("scheduler")
    if running is not None:  # its passes use the client
        await running.stop()
    tasks = [task for _, task in memo.get("informers") or ()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    client: KubeClient | None = memo.get("client")
    if client is not None:
        await client.close()
    server: Any = memo.get("metrics_server")
    if server is not None:
        # shutdown() blocks until the serving thread notices: do not block the loop.
        await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
        server.server_close()


def ftj_event(memo: kopf.Memo, kind: str | None, ns: str | None, name: str, body: Any) -> None:
    """Every event of a FineTuneJob (`kind` None: the listing at a start) keeps the
    scheduler's copy current; a new spec generation (not our own writes) and the job's
    deletion make it due now (the deletion even during an error backoff)."""
    scheduler: Scheduler = memo.scheduler
    key = (ns or "", name)
    if kind == "DELETED":
        scheduler.delete(key)
        return
    if body.metadata.get("deletionTimestamp"):
        if key in scheduler.entries:  # its pass ends it (STOP); none starts for it after
            scheduler.upsert(key, trim_ftj(body))
            scheduler.poke(key, urgent=True)
        return
    scheduler.upsert(key, trim_ftj(body))
    observed = int((body.status or {}).get("observedGeneration") or 0)
    if int(body.metadata.get("generation") or 0) > observed:
        scheduler.poke(key)


class SharedMemo(kopf.Memo):
    """The operator's memo, which every object's handlers share as it is.

    kopf gives each object it sees (every FineTuneJob, Job and pod) a shallow copy of the
    operator's memo: ~0.5 KiB each, ~1.4 KiB per running job (issue 21). Our handlers keep
    per-job state in the memo's dicts, keyed by (namespace, name), and never set a key of
    their own on it, so one memo serves them all."""

    def __copy__(self) -> SharedMemo:
        return self


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: we have no on.create/on.update handlers to feed, and storing it would
    cost every FineTuneJob one more PATCH. Spec changes make the job due via `ftj_event`."""

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        """No essence either: kopf's deep copy of every event's body (then another to clear
        it of progress) fed only the diff-base that is never stored or compared, and cost
        a tenth of the operator's CPU per new job (bench/findings.md)."""
        return {}

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def poke(memo: kopf.Memo, key: Key) -> None:
    """A child (Job or pod) changed: reconcile its FineTuneJob now, not at the next
    interval."""
    scheduler: Scheduler | None = memo.get("scheduler")
    if scheduler is not None:
        scheduler.poke(key[:2])
