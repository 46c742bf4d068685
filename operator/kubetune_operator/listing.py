"""Accepted specs after an operator start: one paginated LIST per namespace, not a GET each.

A job's accepted spec lives on its ConfigMap and is remembered once read (memo.accepted).
A new operator (a restart, a failover) remembers nothing, and every running job's first look
used to GET its ConfigMap: 5000 GETs at the API cap (--qps 50) are 100 s of budget before
the resync is done (issue 21). Instead the first miss in a namespace lists our spec
ConfigMaps there, PAGE at a time, and the misses of the next LISTING_SECONDS are answered
from that listing. Later misses (a ConfigMap deleted by hand, a job created by another
replica after the listing) GET as before: a listing is made once per namespace and process,
so a miss that keeps recurring cannot turn into repeated LISTs of the whole namespace.

What a listing holds is only each ConfigMap named as ours cut to its owner uids and spec
annotation, at most MAX_LISTED of them; builders.accepted_spec reads an entry when its job
asks, exactly as it reads a GET's copy (the uid must match), and the rest is dropped when the
listing expires.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from kubetune_api import constants as c

from . import builders as b
from .k8s import CONFIGMAPS, KubeClient

PAGE = 500
LISTING_SECONDS = 120.0  # an operator start's first looks all fall inside this
MAX_LISTED = 50_000  # what one listing keeps at most (0.7 KiB each: ~35 MiB)
SPEC_CONFIGMAPS = {c.LABEL_MANAGED_BY: b.MANAGED_BY, c.LABEL_COMPONENT: "spec"}


@dataclass
class Listing:
    at: float
    # job -> its ConfigMap cut to what builders.accepted_spec reads (owner uids, annotation)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Listings:
    """Per namespace: the listing made at this process's first miss there."""

    made: dict[str, Listing] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def accepted(
        self, client: KubeClient, ns: str, name: str, uid: str
    ) -> dict[str, Any] | None:
        """The job's accepted spec from its namespace's listing (made now if this is the
        namespace's first miss), or None: then the caller GETs the ConfigMap."""
        listing = self.made.get(ns)
        if listing is None:
            async with self.locks.setdefault(ns, asyncio.Lock()):
                listing = self.made.get(ns)
                if listing is None:
                    listing = self.made[ns] = await _list(client, ns)
        if time.monotonic() - listing.at > LISTING_SECONDS:
            listing.specs.clear()  # expired: later misses GET (the listing stays made)
            return None
        return b.accepted_spec(listing.specs.pop(name, None), uid)  # as a GET's copy is read


async def _list(client: KubeClient, ns: str) -> Listing:
    listing = Listing(at=time.monotonic())
    async for page, _ in client.list_pages(CONFIGMAPS, ns, SPEC_CONFIGMAPS, PAGE):
        for cm in page:
            job = ((cm.get("metadata") or {}).get("labels") or {}).get(c.LABEL_JOB)
            if not job or cm["metadata"].get("name") != b.configmap_name(job):
                continue  # not a spec ConfigMap of ours by name: a GET would not read it
            meta = cm["metadata"]
            raw = (meta.get("annotations") or {}).get(b.ACCEPTED_SPEC)
            if raw:
                owners = [{"uid": r.get("uid")} for r in meta.get("ownerReferences") or []]
                kept = {"ownerReferences": owners, "annotations": {b.ACCEPTED_SPEC: raw}}
                listing.specs[job] = {"metadata": kept}
            if len(listing.specs) >= MAX_LISTED:
                return listing
    listing.at = time.monotonic()  # answers from when it is complete
    return listing
