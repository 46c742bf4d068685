"""The watch cache: FineTuneJobs, their Jobs and pods as kopf already receives them.

A running job's reconcile reads nothing from the API server: its FineTuneJob is the copy
the scheduler keeps (`trim_ftj`, replaced on every watch event), its Jobs and pods come
from the two stores our informers keep (informer.py) from the same watches that wake the
job. The scheduler runs no pass before every informer holds its initial listing, so an
absent entry means absent, except right after our own create (the event is on its way):
then one GET, counted in kubetune_cache_misses_total.

Memory per job is bounded: an index keeps only the fields observe() reads (no pod spec,
no managedFields, no template, only the labels read), one entry per object, dropped with
the object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune_api import constants as c

from .observe import INDEX_ANNOTATION

Key = tuple[str, str, str]  # (namespace, FineTuneJob name, attempt number as text)


def child_key(namespace: str | None, labels: Mapping[str, str]) -> Key | None:
    """Where a Job or pod of ours is filed: its FineTuneJob and attempt (our labels)."""
    name, attempt = labels.get(c.LABEL_JOB), labels.get(c.LABEL_ATTEMPT)
    if not namespace or not name or not attempt:
        return None
    return (namespace, name, attempt)


# The labels the Job controller puts on its pods: the Job's uid (old and new spelling).
CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
# What is read of a pod's labels (view.pod_of, observe.pod_index); of a Job's, nothing: the
# index's key (our labels) files it. Real pods carry ~8 labels, copied FineTuneJob labels too.
_POD_LABELS = (*CONTROLLER_UID_LABELS, INDEX_ANNOTATION)


def _meta(
    obj: Mapping[str, Any], annotations: tuple[str, ...] = (), labels: tuple[str, ...] = ()
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}
    out["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k in labels}
    out["ownerReferences"] = [
        {"uid": r.get("uid"), "kind": r.get("kind")} for r in meta.get("ownerReferences") or []
    ]
    kept = {k: v for k, v in (meta.get("annotations") or {}).items() if k in annotations}
    if kept:
        out["annotations"] = kept
    if meta.get("deletionTimestamp"):
        out["deletionTimestamp"] = meta["deletionTimestamp"]
    return out


# What a pass reads of its FineTuneJob's metadata (reconcile.py, view.py, kopf's Events):
# not managedFields, annotations (kopf's progress: the deletion handler has its own body),
# finalizers or ownerReferences.
_FTJ_META = ("name", "namespace", "uid", "resourceVersion", "generation",
             "creationTimestamp", "deletionTimestamp", "labels")  # fmt: skip


def trim_ftj(body: Mapping[str, Any]) -> dict[str, Any]:
    """A FineTuneJob as the scheduler keeps it: identity, labels, spec and status."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _FTJ_META if k in meta},
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def trim_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A Job as observe() reads it: identity, suspend, status."""
    spec = job.get("spec") or {}
    return {
        "metadata": _meta(job),
        "spec": {"suspend": spec["suspend"]} if "suspend" in spec else {},
        "status": dict(job.get("status") or {}),
    }


_POD_STATUS = ("phase", "podIP", "reason", "message")
# Of a pod's conditions and container statuses, what observe() reads: a kubelet's pod has
# ~5 conditions with two timestamps each and container statuses with image, imageID,
# containerID, resources, mounts: ~1.5-3 KiB a pod that no decision uses.
_POD_CONDITIONS = ("DisruptionTarget", "PodScheduled")
_COND_FIELDS = ("type", "status", "reason", "message")
_STATE_FIELDS = {"terminated": ("exitCode", "reason", "message"), "waiting": ("reason", "message")}


def _pick(obj: Mapping[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in keys if k in obj} if obj else {}


def _state(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A container state: only `terminated` or `waiting` (not `running`), their reasons."""
    return {k: _pick(state[k], f) for k, f in _STATE_FIELDS.items() if state and state.get(k)}


def trim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A pod as observe() reads it: identity, completion index, status (never its spec)."""
    status = pod.get("status") or {}
    out = {k: status[k] for k in _POD_STATUS if k in status}
    conditions = [
        _pick(c, _COND_FIELDS)
        for c in status.get("conditions") or ()
        if c.get("type") in _POD_CONDITIONS
    ]
    if conditions:
        out["conditions"] = conditions
    containers = [
        {k: v for k in ("state", "lastState") if (v := _state(cs.get(k)))}
        for cs in status.get("containerStatuses") or ()
    ]
    if containers:
        out["containerStatuses"] = containers
    return {"metadata": _meta(pod, (INDEX_ANNOTATION,), _POD_LABELS), "status": out}


def _rv(obj: Mapping[str, Any] | None) -> int:
    text = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else -1


def newest(*objs: Mapping[str, Any] | None) -> Any:
    """The copy with the highest resourceVersion (the watch's, or one we just wrote).

    resourceVersions are opaque to clients in general, but etcd's (and the emulator's)
    are increasing integers; anything else makes the first copy (the watch's) win."""
    best = None
    for obj in objs:
        if obj is not None and (best is None or _rv(obj) > _rv(best)):
            best = obj
    return best


@dataclass
class Written:
    """What our own writes returned, until the watch delivers that version or a later one:
    without it, the reconcile right after a status patch would decide from the old status."""

    ftjs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Jobs we created (trimmed), until the Job store has them: the look right after a
    # create (woken by another event) would otherwise GET the Job and list its pods.
    jobs: dict[Key, dict[str, Any]] = field(default_factory=dict)

    def remember(self, ns: str, name: str, obj: Mapping[str, Any]) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        self.ftjs[(ns, name)] = {"metadata": {"resourceVersion": rv},
                                 "status": obj.get("status") or {}}  # fmt: skip

    def fresh_status(self, ns: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body's status, or ours if we wrote a later version than it shows."""
        ours = self.ftjs.get((ns, name))
        if ours is None:
            return dict(body.get("status") or {})
        if newest(body, ours) is ours and _rv(ours) > _rv(body):
            return dict(ours["status"])
        del self.ftjs[(ns, name)]  # the watch caught up: forget our copy
        return dict(body.get("status") or {})

    def forget(self, ns: str, name: str) -> None:
        self.ftjs.pop((ns, name), None)
        for key in [k for k in self.jobs if k[:2] == (ns, name)]:
            del self.jobs[key]


def one(store: Iterable[dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    """The object called `name` in an index's store (a Job: one per key normally)."""
    for obj in store or ():
        if (obj.get("metadata") or {}).get("name") == name:
            return obj
    return None
