"""The Kubernetes backend: a job is a FineTuneJob; the operator runs it.

submit = POST the validated FineTuneJob; get/list/metrics = its status (phase, progress,
lastCheckpoint, adapter); logs = the pods log API of the chosen rank's newest pod;
cancel = DELETE it (the operator's finalizer and the owner references remove its Job and
pods). IDs are <namespace>/<name>, as on the local backend.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubetune_api.constants import (
    DEFAULT_METRICS_PORT,
    GROUP,
    LABEL_ATTEMPT,
    LABEL_JOB,
    PLURAL,
    VERSION,
)

from .kubeapi import ApiError, load_api
from .model import CANCELLED, FINISHED, JobInfo, JobsError, UnknownJobError, split_id
from .specs import load_for_submit

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
LOG_POLL_S = 1.0
LIVE_TIMEOUT_S = 2.0


class KubeBackend:
    name = "kubernetes"

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None) -> None:
        self.explicit_ns = namespace
        self.api = load_api(kubeconfig, namespace)

    def _path(self, ns: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def submit(self, spec: str | Path | dict[str, Any], overrides: list[str] | None = None) -> str:
        job = load_for_submit(spec, overrides or [])
        manifest = job.to_manifest()
        ns = self.explicit_ns or job.metadata.namespace
        manifest["metadata"]["namespace"] = ns
        name = manifest["metadata"]["name"]
        try:
            self.api.request("POST", self._path(ns), manifest)
        except ApiError as exc:
            if exc.status == 409:
                raise JobsError(
                    f"FineTuneJob {ns}/{name} already exists: `kubetune jobs cancel {ns}/{name}` "
                    "first, or give this job another metadata.name"
                ) from None
            raise
        return f"{ns}/{name}"

    def _ftj(self, job_id: str) -> dict[str, Any]:
        ns, name = split_id(job_id)
        try:
            return self.api.request("GET", self._path(ns, name))
        except ApiError as exc:
            if exc.status == 404:
                raise UnknownJobError(f"no FineTuneJob {job_id} on {self.api.server}") from None
            raise

    def get(self, job_id: str) -> JobInfo:
        return self._info(self._ftj(job_id))

    def list(self) -> list[JobInfo]:
        items = self.api.request("GET", self._path(self.api.namespace)).get("items", [])
        infos = [self._info(o) for o in items]
        return sorted(infos, key=lambda i: (i.created_at or "", i.id))

    def _info(self, obj: dict[str, Any]) -> JobInfo:
        meta, status = obj["metadata"], obj.get("status") or {}
        progress = status.get("progress") or {}
        phase = status.get("phase") or "Pending"
        conds = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
        reason = next((c.get("reason") for c in conds if c.get("type") == phase), None)
        if reason is None and conds:
            reason = conds[-1].get("reason")
        max_steps = progress.get("totalSteps") or obj["spec"].get("training", {}).get("maxSteps")
        return JobInfo(
            id=f"{meta['namespace']}/{meta['name']}", phase=phase, backend=self.name,
            reason=reason, message=status.get("message") or None,
            retryable=phase == "Failed" and reason in ("RetryableFailure", "Preempted"),
            attempt=status.get("attempt") or 1, created_at=meta.get("creationTimestamp"),
            started_at=status.get("startTime"), finished_at=status.get("completionTime"),
            run_uri=None, step=progress.get("step"), max_steps=max_steps,
            checkpoint=status.get("lastCheckpoint"),
            extra={"jobName": status.get("jobName"), "adapter": status.get("adapter"),
                   "deleting": bool(meta.get("deletionTimestamp"))},
        )  # fmt: skip

    def metrics(self, job_id: str) -> dict[str, Any]:
        """Status progress (what the operator scraped), and rank 0's own /metrics right now
        when this machine can reach the pod (inside the cluster; else `live` is None)."""
        obj = self._ftj(job_id)
        status = obj.get("status") or {}
        progress = status.get("progress") or {}
        latest = {k: v for k, v in progress.items() if isinstance(v, (int, float))}
        ckpt = status.get("lastCheckpoint")
        live = None
        if status.get("phase") == "Running":
            port = (obj["spec"].get("metrics") or {}).get("port", DEFAULT_METRICS_PORT)
            live = self._live_metrics(*split_id(job_id), int(port))
        return {
            "id": job_id, "phase": status.get("phase") or "Pending", "latest": latest,
            "rows": [], "checkpoint": {"uri": ckpt} if ckpt else None,
            "adapter": status.get("adapter"), "live": live,
        }  # fmt: skip

    def _live_metrics(self, ns: str, name: str, port: int) -> dict[str, float] | None:
        pod = self._pod(ns, name, 0)
        if pod is None:
            return None
        ip = (
            self.api.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod}").get("status") or {}
        ).get("podIP")
        if not ip:
            return None
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=LIVE_TIMEOUT_S) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError:
            return None  # outside the cluster network: the status is what there is
        from prometheus_client.parser import text_string_to_metric_families

        return {
            s.name: s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("kubetune_") and not s.labels
        }

    def _pod(self, ns: str, name: str, rank: int) -> str | None:
        """The newest pod of the chosen rank (completion index) of the newest attempt."""
        pods = self.api.request(
            "GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"{LABEL_JOB}={name}"}
        ).get("items", [])
        mine = [p for p in pods if _index(p) == rank]
        if not mine:
            return None
        newest = max(mine, key=_age)
        return str(newest["metadata"]["name"])

    def logs(self, job_id: str, follow: bool = False, rank: int = 0) -> Iterator[str]:
        ns, name = split_id(job_id)
        seen: dict[str, int] = {}  # pod -> characters already printed
        while True:
            info = self.get(job_id)
            pod = self._pod(ns, name, rank)
            if pod is None and not follow:
                raise JobsError(f"job {job_id} has no pod of rank {rank} (phase {info.phase})")
            if pod is not None:
                try:
                    text = self.api.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod}/log",
                                            params={"container": "trainer"}, raw=True)  # fmt: skip
                except ApiError as exc:
                    if exc.status not in (400, 404):  # 400: the container is not started yet
                        raise
                    text = ""
                done = seen.get(pod, 0)
                if len(text) > done:
                    yield text[done:]
                    seen[pod] = len(text)
            if not follow or info.phase in FINISHED:
                return
            time.sleep(LOG_POLL_S)

    def cancel(self, job_id: str) -> JobInfo:
        info = self.get(job_id)
        ns, name = split_id(job_id)
        try:
            self.api.request("DELETE", self._path(ns, name))
        except ApiError as exc:
            if exc.status != 404:
                raise
        info.phase, info.reason = CANCELLED, "Deleted"
        info.message = "the FineTuneJob was deleted; the operator removes its Job and pods"
        return info


def _age(pod: dict[str, Any]) -> tuple[int, str]:
    """Newest attempt first, then newest creation (a replaced pod of the same attempt)."""
    meta = pod["metadata"]
    attempt = str((meta.get("labels") or {}).get(LABEL_ATTEMPT, "0"))
    return (int(attempt) if attempt.isdigit() else 0, meta.get("creationTimestamp") or "")


def _index(pod: dict[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("labels") or {}).get(INDEX_LABEL) or (meta.get("annotations") or {}).get(
        INDEX_LABEL
    )
    return int(raw) if raw is not None and str(raw).isdigit() else None
