"""A Kubernetes API emulator: KMock 0.8's server, request log and object store, plus the
API-server semantics the operator (kopf) and kubectl rely on.

KMock 0.8 as shipped serves objects but sets no uid/resourceVersion/creationTimestamp/
generation, loses watch events between its snapshot and the live stream, replays
stale objects as ADDED whatever resourceVersion was asked, returns lists without
`kind`, reports the core group as "/v1", has no PUT, no label selectors, no isolation
of `/status`, no JSON-patch `test` failures as 422, and no garbage collection.
`Emulator` keeps KMock's HTTP server, its request log (`emulator.requests`) and its
versioned object store (`emulator.objects[res, ns, name]` with `.history`) and serves
every resource request itself:

* metadata: uid, resourceVersion (one global counter), creationTimestamp, generation
  (bumped when anything outside metadata/status changes), generateName;
* POST (409 AlreadyExists), GET, LIST (`kind: <Kind>List`, list resourceVersion,
  labelSelector: =, ==, !=, in, notin, exists, !exists; fieldSelector: = and != on
  any dotted path; `limit` and `continue` chunks in (namespace, name) order, as etcd's
  key order gives them; `remainingItemCount`), PUT (optimistic concurrency on
  metadata.resourceVersion), PATCH (merge, strategic as merge, JSON patch with `test` ->
  422), DELETE (finalizers -> deletionTimestamp; the object goes when the last finalizer
  is removed), DELETE of a collection by selector;
* `/status` isolation for resources with the status subresource (both directions);
* WATCH: from a resourceVersion it replays exactly the later events from an in-memory
  log (410 Gone if too old); without one it sends the current objects as ADDED; the
  snapshot and the subscription happen without yielding to the loop, so nothing is
  lost or duplicated; `sendInitialEvents=true` ends the initial objects with the
  `k8s.io/initial-events-end` bookmark; `timeoutSeconds` ends the stream;
* garbage collection: deleting an object deletes its dependents (ownerReferences by
  uid, any propagation policy except Orphan, immediately and recursively);
* bearer-token authentication when `emulator.tokens` is set (401 otherwise);
* injected faults: `emulator.fail("GET", path, 500)` answers the next matching request(s)
  with that error (an API server having a bad moment), with `message=` as the Status
  message (a 422 that names the invalid field), after `delay=` seconds (a request
  that outlives the client's timeout) or with `retry_after=` (a 429 from priority and
  fairness); `emulator.statuses[request.id]` is the code each logged request was
  answered with, `emulator.received[request.id]` when it arrived (time.monotonic());
* CRDs: creating a CustomResourceDefinition registers its resource, subresources and
  printer columns; discovery and Table output live in kube_discovery.py.

Still missing (not needed by the operator or these tests): admission (no schema or CEL
validation, no defaulting, no immutability checks: the operator's own rejection is
what is tested), server-side apply, real strategic-merge (lists are replaced), dry
run, field managers, namespace lifecycle, owner-aware GC with several owners (any
deleted owner deletes the dependent), foreground deletion ordering, authorization
(RBAC), periodic watch bookmarks, OpenAPI documents, pagination (`limit` and
`continue` are ignored), Table output for watches, and every controller (Job
controller, kubelet, scheduler, Kueue): tests play them by writing pods and statuses
through the API (job_play.py).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import jsonpatch
import kmock

from tests.support.kube import discovery as disc
from tests.support.kube.wire import ApiStatus, merge_patch, now_rfc3339, parse_request

Obj = dict[str, Any]
LOG_SIZE = 20000


@dataclass
class Fault:
    """The next `times` requests with this method and URL path (from a client whose
    User-Agent starts with `agent`) are answered with `code` instead of being served."""

    method: str
    path: str
    code: int = 500
    times: int = 1
    agent: str = ""
    hits: int = 0
    message: str = "injected fault"
    delay: float = 0.0  # seconds to wait before answering
    retry_after: float | None = None  # a Retry-After header (with 429: throttling)

    def take(self, request: kmock.Request) -> bool:
        if self.hits >= self.times or str(request.method.value).upper() != self.method:
            return False
        if request.url.path != self.path:
            return False
        if not request.headers.get("User-Agent", "").startswith(self.agent):
            return False
        self.hits += 1
        return True


@dataclass(eq=False)  # identity-hashed: watchers live in a set
class Watcher:
    res: kmock.resource
    namespace: str | None
    labels: str
    fields: str
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)

    def wants(self, obj: Obj) -> bool:
        ns = obj["metadata"].get("namespace")
        return (self.namespace is None or self.namespace == ns) and (
            disc.match_labels(obj, self.labels) and disc.match_fields(obj, self.fields)
        )


class Emulator(kmock.KubernetesEmulator):
    """Use as KMock's handler: `async with Emulator() as emu, kmock.Server(emu): ...`."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.kinds: dict[tuple[str, str, str], disc.KindInfo] = {}
        self.rv = 0
        self.log: list[tuple[int, kmock.resource, Obj]] = []
        self.watchers: set[Watcher] = set()
        # None: no authentication; else the bearer tokens accepted (rotate them in tests).
        self.tokens: set[str] | None = None
        self.faults: list[Fault] = []
        self.statuses: dict[int, int] = {}  # request id -> the HTTP status it was answered
        # (namespace, pod) -> the text `GET .../pods/NAME/log` answers (a test plays the kubelet)
        self.pod_logs: dict[tuple[str | None, str], str] = {}
        self.received: dict[int, float] = {}  # request id -> time.monotonic() on arrival
        for info in disc.BUILTIN_KINDS:
            self.register(info)

    # --- registry -------------------------------------------------------------------
    def register(self, info: disc.KindInfo) -> None:
        self.kinds[(info.group, info.version, info.plural)] = info

    def kind_of(self, res: kmock.resource) -> disc.KindInfo:
        info = self.kinds.get((res.group or "", res.version or "", res.plural or ""))
        if info is None:
            raise ApiStatus(404, "NotFound", f"the server could not find the resource {res}")
        return info

    # --- HTTP entry -----------------------------------------------------------------
    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """KMock's entry, with our URL parser: KMock's crashes on /api/v1/namespaces."""
        request = await parse_request(raw, len(self._requests))
        self.received[request.id] = time.monotonic()
        self._requests.append(request)
        try:
            resp = await self._handle(request)
        except Exception as exc:  # answer like an API server, and keep serving
            resp = aiohttp.web.json_response(
                ApiStatus(500, "InternalError", repr(exc)).body(), status=500
            )
        self.statuses[request.id] = resp.status
        return resp

    def fail(
        self,
        method: str,
        path: str,
        code: int = 500,
        times: int = 1,
        agent: str = "",
        message: str = "injected fault",
        delay: float = 0.0,
        retry_after: float | None = None,
    ) -> Fault:
        """Answer the next `times` matching requests with `code` (see `Fault`)."""
        fault = Fault(
            method.upper(), path, code, times, agent, message=message, delay=delay,
            retry_after=retry_after,
        )  # fmt: skip
        self.faults.append(fault)
        return fault

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        try:
            if self.tokens is not None:
                auth = request.headers.get("Authorization", "")
                if auth.removeprefix("Bearer ") not in self.tokens:
                    raise ApiStatus(401, "Unauthorized", "Unauthorized")
            for fault in self.faults:
                if fault.take(request):
                    await asyncio.sleep(fault.delay)
                    reason = {422: "Invalid", 400: "BadRequest", 403: "Forbidden",
                              429: "TooManyRequests"}  # fmt: skip
                    if fault.retry_after is not None:
                        status = ApiStatus(fault.code, reason.get(fault.code, ""), fault.message)
                        return aiohttp.web.json_response(
                            status.body(), status=fault.code,
                            headers={"Retry-After": f"{fault.retry_after:g}"},
                        )  # fmt: skip
                    raise ApiStatus(
                        fault.code, reason.get(fault.code, "InternalError"), fault.message
                    )
            if request.resource is not None and request.resource.plural:
                return await self._serve_resource(request)
            payload = disc.serve_discovery(self, request)
            if payload is not None:
                return aiohttp.web.json_response(payload)
            return await super()._handle(request)  # KMock: /version, user reactions
        except ApiStatus as exc:
            return aiohttp.web.json_response(exc.body(), status=exc.code)

    async def _serve_resource(self, req: kmock.Request) -> aiohttp.web.StreamResponse:
        info = self.kind_of(req.resource)
        method, sub, name = str(req.method.value).upper(), req.subresource, req.name
        ns = req.namespace if info.namespaced else None
        if method == "GET" and req.params.get("watch") in ("true", "1"):
            return await self._watch(req, info, ns)
        if method == "GET" and name is None:
            # Copied after paging: a page of 500 must not copy every object of the kind
            # (5000 pods listed in 10 pages were 50,000 deep copies).
            items = self._select(req.resource, ns, req.params, copied=False)
            listed, token = _page(items, req.params)
            listed = [copy.deepcopy(o) for o in listed]
            body = self._list(info, listed)
            if token:
                body["metadata"]["continue"] = token
                body["metadata"]["remainingItemCount"] = len(items) - len(listed)
            return self._respond(req, info, body, listed)
        if method == "GET" and sub == "log":  # the pods log API: plain text, no follow
            self._get(req.resource, ns, name)
            return aiohttp.web.Response(text=self.pod_logs.get((ns, name), ""))
        if method == "GET":
            obj = self._get(req.resource, ns, name)
            return self._respond(req, info, obj, [obj])
        if method == "POST" and name is None:
            return aiohttp.web.json_response(self.create(req.resource, ns, req.data), status=201)
        if method == "DELETE" and name is None:
            deleted = [
                self.delete(req.resource, ns, o["metadata"]["name"], req.data)
                for o in self._select(req.resource, ns, req.params)
            ]
            return aiohttp.web.json_response(self._list(info, deleted))
        if method == "DELETE":
            return aiohttp.web.json_response(self.delete(req.resource, ns, name, req.data))
        if method == "PUT":
            return aiohttp.web.json_response(self.replace(req.resource, ns, name, req.data, sub))
        if method == "PATCH":
            ctype = req.headers.get("Content-Type", "")
            return aiohttp.web.json_response(
                self.patch(req.resource, ns, name, req.data, ctype, sub)
            )
        raise ApiStatus(405, "MethodNotAllowed", f"{method} is not supported here")

    def _respond(
        self, req: kmock.Request, info: disc.KindInfo, payload: Obj, items: list[Obj]
    ) -> aiohttp.web.StreamResponse:
        if "as=Table" in req.headers.get("Accept", ""):
            payload = disc.table(info, items, self.rv, req.params.get("includeObject", "Metadata"))
        return aiohttp.web.json_response(payload)

    # --- storage --------------------------------------------------------------------
    def _live(self, res: kmock.resource, ns: str | None, name: str) -> Any:
        key = (res, ns, name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key]
        return None

    def _get(self, res: kmock.resource, ns: str | None, name: str) -> Obj:
        obj = self._live(res, ns, name)
        if obj is None:
            raise ApiStatus(404, "NotFound", f'{res.plural} "{name}" not found')
        return copy.deepcopy(obj.raw)

    def _select(
        self, res: kmock.resource, ns: str | None, params: Any, copied: bool = True
    ) -> list[Obj]:
        labels, fields = params.get("labelSelector", ""), params.get("fieldSelector", "")
        out = []
        for (r, ons, _name), obj in list(self.objects.items()):
            if r == res and not obj.deleted and (ns is None or ons == ns):
                raw = obj.raw
                if disc.match_labels(raw, labels) and disc.match_fields(raw, fields):
                    out.append(copy.deepcopy(raw) if copied else raw)
        return out

    def _list(self, info: disc.KindInfo, items: list[Obj]) -> Obj:
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _emit(self, res: kmock.resource, etype: str, obj: Obj) -> None:
        event = {"type": etype, "object": copy.deepcopy(obj)}
        self.log.append((self.rv, res, event))
        del self.log[:-LOG_SIZE]
        for w in list(self.watchers):
            if w.res == res and w.wants(obj):
                w.queue.put_nowait(event)

    def create(self, res: kmock.resource, ns: str | None, body: Any) -> Obj:
        info = self.kind_of(res)
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise ApiStatus(422, "Invalid", "metadata.name: Required value")
        if info.namespaced:
            meta["namespace"] = ns or meta.get("namespace") or "default"
        if self._live(res, meta.get("namespace"), name) is not None:
            raise ApiStatus(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        for k in ("deletionTimestamp", "resourceVersion"):
            meta.pop(k, None)
        if "status" in info.subresources:
            obj.pop("status", None)  # like the API server: status only via /status
        self._bump(obj)
        key = (res, meta.get("namespace"), name)
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._emit(res, "ADDED", obj)
        if info.group == "apiextensions.k8s.io" and info.plural == "customresourcedefinitions":
            for kind in disc.kinds_from_crd(obj):
                self.register(kind)
        return copy.deepcopy(obj)

    def _store(self, res: kmock.resource, old: Obj, new: Obj, sub: str | None) -> Obj:
        """Common tail of PUT/PATCH: isolation, system fields, generation, finalization."""
        info = self.kind_of(res)
        if "status" in info.subresources:
            if sub == "status":  # only status changes through /status
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
            else:  # and never through the main resource
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for k in (
            "uid",
            "name",
            "namespace",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = info.api_version, info.kind
        body_of = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
        if body_of(new) != body_of(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if new == old:
            return copy.deepcopy(old)  # a no-op write does not bump resourceVersion
        self._bump(new)
        obj = self.objects[(res, old_meta.get("namespace"), old_meta["name"])]
        obj.create(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, new)
        else:
            self._emit(res, "MODIFIED", new)
        return copy.deepcopy(new)

    def replace(self, res: kmock.resource, ns: str | None, name: str, body: Any, sub: Any) -> Obj:
        old = self._get(res, ns, name)
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise ApiStatus(
                409,
                "Conflict",
                "the object has been modified; please apply "
                "your changes to the latest version and try again",
            )
        return self._store(res, old, copy.deepcopy(body), sub)

    def patch(
        self, res: kmock.resource, ns: str | None, name: str, body: Any, ctype: str, sub: Any
    ) -> Obj:
        old = self._get(res, ns, name)
        if "json-patch" in ctype:
            try:
                new = jsonpatch.apply_patch(old, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiStatus(422, "Invalid", f"the JSON patch failed: {exc}") from None
        elif "apply-patch" in ctype:
            raise ApiStatus(415, "UnsupportedMediaType", "server-side apply is not emulated")
        else:  # merge-patch; strategic-merge approximated as merge (lists are replaced)
            want = ((body or {}).get("metadata") or {}).get("resourceVersion")
            if want and want != old["metadata"]["resourceVersion"]:
                raise ApiStatus(409, "Conflict", "the object has been modified")
            new = merge_patch(old, body or {})
        return self._store(res, old, new, sub)

    def delete(self, res: kmock.resource, ns: str | None, name: str, options: Any = None) -> Obj:
        obj = self._get(res, ns, name)
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_rfc3339()
                meta["deletionGracePeriodSeconds"] = 0
                self._bump(obj)
                self.objects[(res, ns, name)].create(obj)
                self._emit(res, "MODIFIED", obj)
            return copy.deepcopy(obj)
        policy = (options or {}).get("propagationPolicy") if isinstance(options, dict) else None
        self._remove(res, obj, orphan=policy == "Orphan")
        return obj

    def _remove(self, res: kmock.resource, obj: Obj, orphan: bool = False) -> None:
        meta = obj["metadata"]
        self._bump(obj)
        self.objects[(res, meta.get("namespace"), meta["name"])].delete()
        self._emit(res, "DELETED", obj)
        if orphan:
            return
        uid = meta["uid"]
        for (r, ons, oname), dep in list(self.objects.items()):
            if dep.deleted:
                continue
            refs = dep.raw.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                self.delete(r, ons, oname)

    # --- watch ----------------------------------------------------------------------
    async def _watch(
        self, req: kmock.Request, info: disc.KindInfo, ns: str | None
    ) -> aiohttp.web.StreamResponse:
        res, params = req.resource, req.params
        w = Watcher(res, ns, params.get("labelSelector", ""), params.get("fieldSelector", ""))
        since = params.get("resourceVersion", "")
        # No await between the snapshot and the subscription: nothing slips in between.
        if since and since != "0":
            start = int(since)
            if self.log and start < self.log[0][0] - 1 and start < self.rv:
                w.queue.put_nowait(
                    {
                        "type": "ERROR",
                        "object": ApiStatus(
                            410, "Expired", f"too old resource version: {start}"
                        ).body(),
                    }
                )
            for rv, r, event in self.log:
                if rv > start and r == res and w.wants(event["object"]):
                    w.queue.put_nowait(copy.deepcopy(event))
        else:
            for o in self._select(res, ns, params):
                w.queue.put_nowait({"type": "ADDED", "object": o})
        if params.get("sendInitialEvents") == "true":
            # Streaming lists (kubectl wait/delete, kopf's initial_streaming): a bookmark
            # marks the end of the initial events.
            w.queue.put_nowait(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": info.kind,
                        "apiVersion": info.api_version,
                        "metadata": {
                            "resourceVersion": str(self.rv),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            )
        self.watchers.add(w)
        raw = req._raw_request
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(raw)
        timeout = float(params.get("timeoutSeconds") or 1800)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                try:
                    event = await asyncio.wait_for(w.queue.get(), timeout=min(1.0, timeout))
                except TimeoutError:
                    if raw.transport is None or raw.transport.is_closing():
                        break
                    continue
                if event is None:
                    break
                await resp.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.discard(w)
        return resp

    def close_watches(self) -> None:
        for w in list(self.watchers):
            w.queue.put_nowait(None)


def _page(items: list[Obj], params: Any) -> tuple[list[Obj], str | None]:
    """`limit`/`continue` chunking: the objects after the token's key, `limit` of them in
    (namespace, name) order, and the token for the rest (None: this was the last chunk)."""
    limit = int(params.get("limit") or 0)
    after = params.get("continue")
    if not limit and not after:
        return items, None
    items = sorted(items, key=_key)
    if after:
        try:
            last = tuple(json.loads(base64.urlsafe_b64decode(after.encode())))
        except ValueError:
            raise ApiStatus(400, "BadRequest", "invalid continue token") from None
        items = [o for o in items if _key(o) > last]
    if not limit or len(items) <= limit:
        return items, None
    page = items[:limit]
    token = base64.urlsafe_b64encode(json.dumps(list(_key(page[-1]))).encode()).decode()
    return page, token


def _key(obj: Obj) -> tuple[str, str]:
    """Where etcd keeps an object: list order."""
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
