"""Our own list+watch of the Jobs and pods we made: what a pass reads of a job's children.

Why not kopf's indexes (the design until issue 21's last round): kopf handles every object
of an indexed resource in a worker task of its own and holds every worker, with its event's
body, loggers and frames, until the indexes of every kind hold their whole listing. An
operator starting with 5000 running jobs held 15,000 of them at once: ~510 MiB at its peak,
twice what the operator that created the same jobs holds (bench/findings.md). Here a LIST
page is trimmed as it arrives (cache.trim_job, cache.trim_pod) and dropped; a watch event is
one object at a time; kopf watches only the FineTuneJobs.

What it does, as client-go's reflector does:
- LIST in pages with our label selector; the first page's resourceVersion (a paged LIST is
  one snapshot on a real API server) is where the WATCH starts, with bookmarks;
- a stream the server ends, or a dropped one, resumes from the last version seen; 410 Gone
  (too old) lists again and replaces the store, poking the jobs whose children changed;
- failures back off from 1 s, doubling to 30 s, and are logged with the reason (a 403 names
  the missing RBAC); an event that is not one (or any other surprise) lists afresh, since
  an update may be lost: the task never dies while the operator runs;
- `listed` is set after the first complete LIST: the scheduler runs no pass before every
  informer's (setup.py), so a Job absent from the store is absent (no duplicate creates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .cache import Key, child_key
from .k8s import ApiError, KubeClient, Resource, selector_text

log = logging.getLogger(__name__)

Trim = Callable[[Mapping[str, Any]], dict[str, Any]]

LIST_PAGE = 500  # objects per LIST page (client-go's pager default)
# The server ends each watch after this long (a fresh one resumes from the last version:
# long-lived streams silently die behind load balancers); the client gives up a stream
# that sent nothing, not even a bookmark, for a bit longer.
WATCH_SECONDS = 300
READ_TIMEOUT = 330.0
MAX_BACKOFF = 30.0


class Expired(Exception):
    """410 Gone: the watch's resourceVersion is too old; only a new LIST can go on."""


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    return child_key(meta.get("namespace"), meta.get("labels") or {})


class Store:
    """One kind's objects of ours, trimmed, filed by child key (what kopf's index held):
    `get(key)` is the attempt's objects, or None."""

    def __init__(self, trim: Trim) -> None:
        self.trim = trim
        self._by_key: dict[Key, dict[str, dict[str, Any]]] = {}
        self._key_of: dict[str, Key] = {}  # uid -> key

    def __len__(self) -> int:
        return len(self._key_of)

    def get(self, key: Key | None) -> Iterable[dict[str, Any]] | None:
        found = self._by_key.get(key) if key is not None else None
        return found.values() if found else None

    def put(self, obj: Mapping[str, Any]) -> list[Key]:
        """Added or modified: the keys whose objects changed (its old one too, if its
        labels moved it)."""
        uid, key = _uid(obj), _key(obj)
        changed = self._remove(uid)
        if uid and key is not None:
            self._by_key.setdefault(key, {})[uid] = self.trim(obj)
            self._key_of[uid] = key
            changed.append(key)
        return changed

    def drop(self, obj: Mapping[str, Any]) -> list[Key]:
        return self._remove(_uid(obj))

    def _remove(self, uid: str) -> list[Key]:
        key = self._key_of.pop(uid, None)
        if key is None:
            return []
        objs = self._by_key[key]
        del objs[uid]
        if not objs:
            del self._by_key[key]
        return [key]

    def replace(self, fresh: Store, namespace: str | None = None) -> set[Key]:
        """Take over a new LIST's objects of `namespace` (None: every namespace), leaving
        the other namespaces' (their informers share this store); the keys that differ."""
        mine = [k for k in self._by_key if namespace is None or k[0] == namespace]
        changed = {k for k in {*mine, *fresh._by_key}
                   if self._by_key.get(k) != fresh._by_key.get(k)}  # fmt: skip
        for key in mine:
            for uid in self._by_key.pop(key):
                del self._key_of[uid]
        self._by_key.update(fresh._by_key)
        self._key_of.update(fresh._key_of)
        return changed


class Informer:
    """One kind (Jobs or pods) in one namespace (None: the cluster), kept in `store`."""

    def __init__(
        self,
        client: KubeClient,
        res: Resource,
        namespace: str | None,
        store: Store,
        selector: dict[str, str],
        on_change: Callable[[Key], None],
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.client, self.res, self.namespace, self.store = client, res, namespace, store
        self.selector, self.on_change, self.keep = selector, on_change, keep
        self.listed = asyncio.Event()
        self.where = f"{res.plural} in {namespace or 'every namespace'}"

    def _wanted(self, obj: Mapping[str, Any]) -> bool:
        ns = (obj.get("metadata") or {}).get("namespace") or ""
        return self.keep is None or self.keep(ns)

    async def run(self) -> None:
        version: str | None = None
        delay = 1.0
        while True:
            try:
                if version is None:
                    version = await self._list()
                    self.listed.set()
                version = await self._watch(version)
                delay = 1.0
            except Expired:
                log.info(f"watch of {self.where}: resourceVersion too old; listing again")
                version = None
            except ApiError as exc:  # resumes from `version` (a LIST again if it failed)
                log.warning(f"watch of {self.where} failed: {exc}; again in {delay:g}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception as exc:  # a malformed event (or a bug): an event may be lost
                if isinstance(exc, ValueError):
                    log.warning(f"watch of {self.where}: {exc}; listing again in {delay:g}s")
                else:
                    log.exception(f"watch of {self.where} failed; listing again in {delay:g}s")
                version = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _list(self) -> str:
        fresh = Store(self.store.trim)
        version = ""
        pages = self.client.list_pages(self.res, self.namespace, self.selector, LIST_PAGE)
        async for page, page_version in pages:
            version = version or page_version  # the first page's: the list's snapshot
            for obj in page:
                if self._wanted(obj):
                    fresh.put(obj)
        changed = self.store.replace(fresh, self.namespace)
        if self.listed.is_set():  # a re-list: what changed meanwhile was never seen
            for key in changed:
                self.on_change(key)
        return version

    async def _watch(self, version: str) -> str:
        params = {"labelSelector": selector_text(self.selector), "resourceVersion": version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}  # fmt: skip
        stream = self.client.watch(self.res, self.namespace, params, READ_TIMEOUT)
        try:
            async with contextlib.aclosing(stream):  # the response closes when we stop reading
                async for event in stream:
                    version = self._apply(event) or version
        except ApiError as exc:
            if exc.status == 410:
                raise Expired from None
            raise
        return version

    def _apply(self, event: Mapping[str, Any]) -> str | None:
        """One watch event into the store; the version it brings."""
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(obj, dict):
            raise ValueError(f"WATCH {self.where}: not a watch event: {str(event)[:200]}")
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise Expired
            raise ApiError(code, f"WATCH {self.where}: {obj.get('message') or obj}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED") and self._wanted(obj):
            changed = self.store.put(obj)
        elif kind == "DELETED":
            changed = self.store.drop(obj)
        else:  # BOOKMARK: only the version
            changed = []
        for key in changed:
            self.on_change(key)
        return str(version) if version else None
