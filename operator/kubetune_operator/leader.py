"""HA: leader election through a `coordination.k8s.io/v1` Lease (client-go's algorithm).

Every replica runs this; the one holding the Lease runs kopf, the others wait. Why a Lease
and not kopf peering: kopf pauses every replica of equal priority (all of them, unless each
pod is given its own), needs its own cluster-wide CRDs, and has no fencing; a Lease is a
built-in kind, needs one Role in the operator's namespace, and a deposed leader stops.

- A standby takes the Lease when it is free (no holder: released on a clean exit) or when
  its record has not changed for `duration` seconds *by the standby's own clock* (client-go
  does the same: no trust in other nodes' clocks).
- The leader renews every `retry_period`; if no renewal succeeded for `renew_deadline`, or
  another replica holds the Lease, the process exits at once (exit code LOST_EXIT_CODE, the
  pod restarts as a standby): a deposed leader must not write another Job.
- On a clean stop (SIGTERM) the leader releases the Lease, so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from .handlers.setup import serve_metrics
from .k8s import ApiError, KubeClient, Resource, login
from .metrics import OperatorMetrics

LEASES = Resource("coordination.k8s.io", "v1", "leases")
LOST_EXIT_CODE = 3  # the Lease was lost: restart as a standby (any non-zero restarts the pod)
log = logging.getLogger("kubetune.leader")


def default_identity() -> str:
    """The pod name (hostname) plus a random part: two processes on one host differ too."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str = field(default_factory=default_identity)
    duration: float = 15.0  # a silent leader's Lease is taken over after this
    renew_deadline: float = 10.0  # the leader gives up (exits) after this without renewal
    retry_period: float = 2.0  # between tries (standby) and renewals (leader)

    def problems(self) -> list[str]:
        """Timings that cannot work (client-go refuses the same ones)."""
        out = []
        if not self.retry_period > 0:
            out.append("the retry period must be > 0")
        if not self.renew_deadline > self.retry_period:
            out.append("the renew deadline must be longer than the retry period")
        if not self.duration > self.renew_deadline:
            out.append("the lease duration must be longer than the renew deadline")
        return out


def micro_time(now: float) -> str:
    """metav1.MicroTime."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(lease: dict[str, Any] | None) -> tuple[str, str]:
    """What a live holder changes on each renewal: (holder, renewTime)."""
    spec = (lease or {}).get("spec") or {}
    return spec.get("holderIdentity") or "", spec.get("renewTime") or ""


def may_take(
    lease: dict[str, Any] | None, me: str, observed_at: float, now: float, duration: float
) -> bool:
    """Whether `me` may write itself as holder: no Lease, no holder, already ours, or the
    record unchanged for `duration` since this replica first saw it (`observed_at`)."""
    holder, _ = record(lease)
    return lease is None or not holder or holder == me or now - observed_at >= duration


class LeaderLost(Exception):
    pass


class Elector:
    """The Lease as seen and written by one replica, through the operator's API client."""

    def __init__(self, client: KubeClient, config: LeaseConfig) -> None:
        self.client = client
        self.config = config
        self.seen: tuple[str, str] | None = None
        self.seen_at = 0.0  # monotonic time the record last changed
        self.renewed_at = 0.0  # monotonic time of our last successful write

    async def try_lead(self) -> bool:
        """One try to acquire or renew; True if we hold the Lease now."""
        cfg = self.config
        path = LEASES.path(cfg.namespace, cfg.name)
        try:
            lease = await self.client.request("GET", path, expected=(404,))
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        now = time.monotonic()
        if record(lease) != self.seen:
            self.seen, self.seen_at = record(lease), now
        if not may_take(lease, cfg.identity, self.seen_at, now, cfg.duration):
            return False
        spec = dict((lease or {}).get("spec") or {})
        wall = micro_time(time.time())
        if spec.get("holderIdentity") != cfg.identity:  # a transition: ours from now
            spec["acquireTime"] = wall
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (lease is not None)
        spec |= {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": max(1, math.ceil(cfg.duration)),
            "renewTime": wall,
        }
        meta = {"name": cfg.name, "namespace": cfg.namespace}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
        try:
            if lease is None:
                await self.client.request(
                    "POST", LEASES.path(cfg.namespace), body={**body, "metadata": meta},
                    expected=(409,),
                )  # fmt: skip
            else:
                meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
                await self.client.request(
                    "PUT", path, body={**body, "metadata": meta}, expected=(409,)
                )
        except ApiError as exc:
            if exc.status == 409:  # another replica wrote first: read again next time
                return False
            raise
        self.renewed_at = time.monotonic()
        return True

    async def acquire(self) -> None:
        """Wait (as a standby) until this replica holds the Lease."""
        cfg = self.config
        log.info("waiting for the lease %s/%s as %s", cfg.namespace, cfg.name, cfg.identity)
        while True:
            try:
                if await asyncio.wait_for(self.try_lead(), cfg.renew_deadline):
                    log.info("acquired the lease %s/%s: leading", cfg.namespace, cfg.name)
                    return
            except (ApiError, TimeoutError) as exc:
                log.warning("lease %s/%s: %s", cfg.namespace, cfg.name, exc)
            await asyncio.sleep(cfg.retry_period)

    async def hold(self) -> None:
        """Renew until the Lease is lost; then raise LeaderLost (never returns otherwise)."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.retry_period)
            left = cfg.renew_deadline - (time.monotonic() - self.renewed_at)
            try:
                if left > 0 and await asyncio.wait_for(self.try_lead(), left):
                    continue
                if self.seen and self.seen[0] not in ("", cfg.identity):
                    raise LeaderLost(f"the lease is held by {self.seen[0]}")
            except (ApiError, TimeoutError) as exc:
                log.warning("renewing the lease %s/%s: %s", cfg.namespace, cfg.name, exc)
            if time.monotonic() - self.renewed_at >= cfg.renew_deadline:
                raise LeaderLost(f"not renewed for {cfg.renew_deadline:g} s")

    async def release(self) -> None:
        """Clean stop: clear the holder so a standby takes over at once (best effort)."""
        cfg = self.config
        path = LEASES.path(cfg.namespace, cfg.name)
        try:
            lease = await self.client.request("GET", path)
            if record(lease)[0] != cfg.identity:
                return
            lease["spec"] |= {"holderIdentity": None, "renewTime": micro_time(time.time())}
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.client.request("PUT", path, body=lease, expected=(409,))
            log.info("released the lease %s/%s", cfg.namespace, cfg.name)
        except ApiError as exc:
            log.warning("releasing the lease %s/%s: %s", cfg.namespace, cfg.name, exc)


def exit_now(reason: str) -> None:
    """A deposed leader stops at once: no cleanup that could still write to the cluster."""
    log.error("lost the leader lease (%s): exiting", reason)
    logging.shutdown()
    os._exit(LOST_EXIT_CODE)


async def lead(
    elector: Elector,
    operate: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    on_lost: Callable[[str], None] = exit_now,
) -> None:
    """Wait for the Lease (or `stop`), run `operate()` while holding it, then release it."""
    acquiring = asyncio.create_task(elector.acquire(), name="lease acquisition")
    stopping = asyncio.create_task(stop.wait(), name="stop flag")
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not acquiring.done() or acquiring.cancelled():  # stopped as a standby
        acquiring.cancel()
        await asyncio.gather(acquiring, stopping, return_exceptions=True)
        return
    holding = asyncio.create_task(elector.hold(), name="lease renewal")
    working = asyncio.create_task(operate(), name="operator")  # type: ignore[arg-type]
    lost: BaseException | None = None
    try:
        await asyncio.wait({holding, working}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done() and isinstance(lost := holding.exception(), LeaderLost):
            on_lost(str(lost))
            return
        await working
    finally:
        for task in (holding, working):
            task.cancel()
        await asyncio.gather(holding, working, return_exceptions=True)
        if not isinstance(lost, LeaderLost):
            await elector.release()


async def run_with_lease(
    config: LeaseConfig,
    stop: asyncio.Event,
    memo: kopf.Memo,
    on_lost: Callable[[str], None] = exit_now,
    **operator_kwargs: Any,
) -> None:
    """kopf.operator(...) on the leader only; kopf's own peering is off (`standalone`).
    The Lease goes through a KubeClient sharing the operator's metrics (API errors)."""
    memo.metrics = memo.get("metrics") or OperatorMetrics()
    # /metrics from the start: a standby is a scrape target of the Service too.
    memo.metrics_server = memo.get("metrics_server") or serve_metrics(memo)
    client = KubeClient(login(), memo.metrics)

    def operate() -> Awaitable[None]:
        return kopf.operator(standalone=True, stop_flag=stop, memo=memo, **operator_kwargs)

    try:
        await lead(Elector(client, config), operate, stop, on_lost)
    finally:
        await client.close()


async def serve_health(
    host: str, port: int, check: Callable[[], dict[str, Any]] | None = None
) -> asyncio.Server:
    """/healthz for the whole life of the process: kopf serves its own only once it runs,
    and a standby failing its liveness probe would be restarted again and again. Served by
    the event loop itself (a stuck loop fails the probe), with no HTTP library: only k8s.py
    imports aiohttp. `check` adds its answer to the body; its exception is a 503 (the
    leader's scheduler is gone: setup.scheduler_health)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            ok = path.split(b"?")[0] == b"/healthz"
            status, body = (b"200 OK", b"{}") if ok else (b"404 Not Found", b"")
            if ok and check is not None:
                try:
                    body = json.dumps(check()).encode()
                except Exception as exc:  # the check's own words, for `kubectl describe`
                    status, body = b"503 Service Unavailable", json.dumps(str(exc)).encode()
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
