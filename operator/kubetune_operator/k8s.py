"""The one module that talks to the Kubernetes API (plus rank 0's /metrics over HTTP).

Client choice: aiohttp directly, with the same credentials kopf logs in with
(`kopf.ConnectionInfo` from the service account or $KUBECONFIG, read at start-up, not
at import). It is async like kopf (no thread pool), one session per operator reused by
every call, and merge-patches are explicit. Every failure is raised as ApiError
(NotFound/Conflict) and counted in kubetune_api_errors_total{verb,code}, except the
answers a call expects: 404 of a GET or DELETE (None/False) and 409 of create-if-missing
(it exists) are how those calls work, not errors. A request that hits the client timeout
is an ApiError too (code "timeout"), so the scheduler retries it with backoff.

An existing object with a child's name is used only if it is ours: its ownerReferences
name the FineTuneJob's uid (`owned_by`); anything else raises ForeignObject.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from kubetune_api import constants as c

from .metrics import OperatorMetrics
from .throttle import MAX_THROTTLED_RETRIES, TokenBucket, retry_after

# 4xx answers that no retry can change: a malformed (400) or invalid (422) object, or one
# the server refuses with a reason (403, e.g. a PodSecurity or webhook denial). A 403 for
# an exceeded ResourceQuota is the exception: capacity frees up, so it is retried.
PERMANENT_CODES = (400, 403, 422)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def permanent(self) -> bool:
        """True if retrying the same request cannot succeed (the attempt fails instead)."""
        if self.status not in PERMANENT_CODES:
            return False
        return not (self.status == 403 and "exceeded quota" in self.message)


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Throttled(Exception):
    """A 429: retried by KubeClient.request after Retry-After (never seen by callers)."""

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers)


class ForeignObject(Exception):
    """A child's name is taken by an object this FineTuneJob does not own."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        super().__init__(
            f"{kind} {namespace}/{name} exists but is not owned by this FineTuneJob: it is "
            "not used; delete or rename it (or re-create the FineTuneJob under another name)"
        )
        self.kind, self.name = kind, name


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether `obj`'s ownerReferences name this uid (a FineTuneJob's, or a Job's for pods)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(r.get("uid") == uid for r in refs)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


FINETUNEJOBS = Resource(c.GROUP, c.VERSION, c.PLURAL)
JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
CONFIGMAPS = Resource("", "v1", "configmaps")
NETWORKPOLICIES = Resource("networking.k8s.io", "v1", "networkpolicies")
SECRETS = Resource("", "v1", "secrets")


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        return False
    ca_data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
    ctx = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None, cadata=ca_data
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl wants files: write the client key to a private temp file for the load only.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "cert"), os.path.join(tmp, "key")
            for path, data in ((cert, info.certificate_data), (key, info.private_key_data)):
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                    f.write(data if isinstance(data, bytes) else data.encode())
            ctx.load_cert_chain(cert, key)
    elif cert:
        ctx.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return ctx


def login() -> kopf.ConnectionInfo:
    """In-cluster service account first, else $KUBECONFIG / ~/.kube/config (read now)."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: neither in-cluster nor kubeconfig")
    return info


def _authorization(info: kopf.ConnectionInfo) -> str | None:
    if info.token:
        return f"Bearer {info.token}"
    if info.username and info.password:
        pair = f"{info.username}:{info.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    return None


# The most of rank 0's /metrics the operator reads (our few gauges take a few kB). A pod
# is not trusted: a bigger or endless body is cut here, so it cannot grow the operator's
# memory past its limit (the chart's 512Mi is shared by every job it follows).
MAX_SCRAPE_BYTES = 4 * 1024 * 1024
# Seconds for one whole scrape (connect + body): a slow pod cannot stall its job's pass.
SCRAPE_TIMEOUT = 3.0
# One watch event's JSON (one line of the stream). A pod is a few KiB, with managedFields
# tens; a line past this is refused (the stream restarts) rather than buffered without end.
MAX_EVENT_BYTES = 8 * 1024 * 1024
_log = logging.getLogger(__name__)


class KubeClient:
    """One aiohttp session for the operator's lifetime; created inside its event loop."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        metrics: OperatorMetrics,
        timeout: float = 30,
        qps: float = 50.0,
        burst: int = 100,
    ) -> None:
        self.server = info.server.rstrip("/")
        self.metrics = metrics
        self.bucket = TokenBucket(qps, burst)
        self.auth = _authorization(info)
        self.session = aiohttp.ClientSession(
            headers={"Accept": "application/json", "User-Agent": "kubetune-operator"},
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info), limit=20),
            timeout=aiohttp.ClientTimeout(total=timeout, connect=min(5, timeout)),
        )
        # A separate session without credentials: the API token must never reach a pod.
        self.scrape_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        )

    async def close(self) -> None:
        await self.session.close()
        await self.scrape_session.close()

    async def scrape(self, ip: str, port: int) -> str | None:
        """Rank 0's Prometheus text, or None if it does not answer (yet): never fatal."""
        host = f"[{ip}]" if ":" in ip else ip
        url = f"http://{host}:{port}/metrics"
        try:
            async with self.scrape_session.get(url) as resp:
                if resp.status != 200:
                    return None
                if (resp.content_length or 0) > MAX_SCRAPE_BYTES:
                    _log.warning(f"{url}: /metrics is over {MAX_SCRAPE_BYTES} bytes; ignored")
                    return None
                # Read one byte past the limit: that byte says the body was too big.
                body = await resp.content.read(MAX_SCRAPE_BYTES + 1)
                while len(body) <= MAX_SCRAPE_BYTES and not resp.content.at_eof():
                    more = await resp.content.read(MAX_SCRAPE_BYTES + 1 - len(body))
                    if not more:
                        break
                    body += more
                if len(body) > MAX_SCRAPE_BYTES:
                    _log.warning(f"{url}: /metrics is over {MAX_SCRAPE_BYTES} bytes; ignored")
                    return None
                return body.decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        expected: tuple[int, ...] = (),
        deferrable: bool = False,
    ) -> dict[str, Any]:
        """One API call; `expected` error codes are still raised but not counted.
        `deferrable`: may raise throttle.Deferred instead while jobs are being created."""
        for fresh_login in (False, True):
            if fresh_login:
                # Projected service-account tokens rotate: read the token again, once.
                self.auth = _authorization(login())
            try:
                return await self._request(
                    method, path, params, body, content_type, expected, deferrable
                )
            except ApiError as exc:
                if exc.status != 401 or fresh_login:
                    raise
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        path: str,
        params: Any,
        body: Any,
        content_type: str,
        expected: tuple[int, ...],
        deferrable: bool = False,
    ) -> dict[str, Any]:
        verb = method.lower()
        for retry in range(MAX_THROTTLED_RETRIES + 1):
            waited = await self.bucket.acquire(deferrable and retry == 0)
            if waited:
                self.metrics.api_wait.inc(waited)
            self.metrics.api_requests.labels(verb).inc()
            try:
                return await self._send(method, path, params, body, content_type, expected)
            except Throttled as exc:
                if retry == MAX_THROTTLED_RETRIES:
                    self.metrics.api_errors.labels(verb, "429").inc()
                    raise ApiError(429, exc.message) from None
                delay = retry_after(exc.headers, retry)
                self.metrics.api_throttled.labels(verb).inc()
                _log.info(f"{exc.message}; retrying in {delay:g}s (Retry-After)")
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        path: str,
        params: Any,
        body: Any,
        content_type: str,
        expected: tuple[int, ...],
    ) -> dict[str, Any]:
        verb = method.lower()
        headers = {"Authorization": self.auth} if self.auth else {}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            async with self.session.request(
                method, self.server + path, params=params, json=body, headers=headers
            ) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:  # e.g. an HTML error page from a proxy in between
                    data = {"message": text[:200]}
                if resp.status == 429:  # priority and fairness: wait as told, then retry
                    raise Throttled(f"{method} {path}: 429 Too Many Requests", resp.headers)
                if resp.status >= 400:
                    if resp.status not in expected:
                        self.metrics.api_errors.labels(verb, str(resp.status)).inc()
                    msg = (data or {}).get("message") if isinstance(data, dict) else None
                    cls = {404: NotFound, 409: Conflict}.get(resp.status, ApiError)
                    raise cls(resp.status, f"{method} {path}: {msg or resp.reason}")
                return data if isinstance(data, dict) else {}
        except TimeoutError as exc:  # aiohttp's timeouts subclass it (3.11+: asyncio's too)
            self.metrics.api_errors.labels(verb, "timeout").inc()
            raise ApiError(0, f"{method} {path}: timed out") from exc
        except aiohttp.ClientError as exc:
            self.metrics.api_errors.labels(verb, "connection").inc()
            raise ApiError(0, f"{method} {path}: {exc}") from exc

    async def get(self, res: Resource, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", res.path(ns, name), expected=(404,))
        except NotFound:
            return None

    async def list(self, res: Resource, ns: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        data = await self.request(
            "GET", res.path(ns), params={"labelSelector": selector_text(selector)}
        )
        return list(data.get("items") or [])

    async def list_pages(
        self, res: Resource, ns: str | None, selector: dict[str, str], limit: int
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """The matching objects `limit` at a time (the API's limit/continue chunks), so a
        namespace with thousands of them is never one response in memory; each page with
        its resourceVersion (a paged LIST is one snapshot: the first page's is the list's)."""
        params = {"labelSelector": selector_text(selector), "limit": str(limit)}
        while True:
            data = await self.request("GET", res.path(ns), params=params)
            meta = data.get("metadata") or {}
            yield list(data.get("items") or []), str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return
            params["continue"] = token

    async def watch(
        self, res: Resource, ns: str | None, params: dict[str, str], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """One WATCH stream's events as the server sends them, until it ends the stream
        (`timeoutSeconds` in `params`) or sends nothing for `read_timeout` seconds. The
        start takes a token of the cap like any request; 410 Gone is an ApiError(410)."""
        await self.bucket.acquire(False)
        self.metrics.api_requests.labels("watch").inc()
        headers = {"Authorization": self.auth} if self.auth else {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        try:
            async with self.session.get(
                self.server + res.path(ns), params={**params, "watch": "true"},
                headers=headers, timeout=timeout,
            ) as resp:  # fmt: skip
                if resp.status >= 400:
                    if resp.status == 401:  # a rotated token: read it again for the next try
                        self.auth = _authorization(login())
                    text = (await resp.content.read(4096)).decode("utf-8", "replace")
                    self.metrics.api_errors.labels("watch", str(resp.status)).inc()
                    raise ApiError(resp.status, f"WATCH {res.path(ns)}: {text[:200]}")
                async for line in _lines(resp.content):
                    yield json.loads(line)
        except TimeoutError as exc:
            self.metrics.api_errors.labels("watch", "timeout").inc()
            raise ApiError(0, f"WATCH {res.path(ns)}: nothing for {read_timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            self.metrics.api_errors.labels("watch", "connection").inc()
            raise ApiError(0, f"WATCH {res.path(ns)}: {exc}") from exc

    async def create_if_missing(
        self, res: Resource, obj: dict[str, Any], owner_uid: str | None
    ) -> dict[str, Any] | None:
        """Create; an existing object with that name (409) counts as done if `owner_uid` owns
        it, else ForeignObject (None: no check, for Secrets the operator may not read).
        The created object as the server answered, or None if it existed."""
        meta = obj["metadata"]
        ns = meta["namespace"]
        try:
            return await self.request("POST", res.path(ns), body=obj, expected=(409,))
        except Conflict:
            if owner_uid is None:
                return None
            existing = await self.get(res, ns, meta["name"])
            if existing is not None and not owned_by(existing, owner_uid):
                raise ForeignObject(obj["kind"], ns, meta["name"]) from None
            return None

    async def patch(
        self,
        res: Resource,
        ns: str,
        name: str,
        patch: dict[str, Any],
        sub: str = "",
        deferrable: bool = False,
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", res.path(ns, name, sub), body=patch,
            content_type="application/merge-patch+json", deferrable=deferrable,
        )  # fmt: skip

    async def delete(
        self, res: Resource, ns: str, name: str, propagation: str = "Background"
    ) -> bool:
        """Delete; children go by the garbage collector. False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            await self.request("DELETE", res.path(ns, name), body=body, expected=(404,))
            return True
        except NotFound:
            return False


def selector_text(selector: Mapping[str, str]) -> str:
    """A label selector of equalities as the API takes it: "k=v,k2=v2"."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """A watch stream's lines (one JSON event each), none longer than MAX_EVENT_BYTES."""
    buf = bytearray()
    async for chunk in content.iter_any():
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end > start:
                yield bytes(buf[start:end])
            start = end + 1
        del buf[:start]
        if len(buf) > MAX_EVENT_BYTES:
            raise ApiError(0, f"a watch event over {MAX_EVENT_BYTES} bytes")
    if buf.strip():
        yield bytes(buf)
