"""Pure: what happened to one attempt, read from its Job and pods.

The operator classifies failures itself (the Job has backoffLimit 0):
  * permanent — trainer exit codes 64 (invalid spec), 65 (bad data), 73 (disk full or
    no permission to write), 66 or the container reason OOMKilled (out of memory): the
    FineTuneJob fails at once;
  * preempted — the pod condition DisruptionTarget (preemption, eviction by the API,
    taint manager) or exit code 76 (SIGTERM, checkpoint saved): resume, not counted;
  * retryable — anything else (75, 70, unknown codes, a pod lost with its node,
    kubelet evictions without DisruptionTarget): resume, counted against maxRestarts.
When ranks disagree (one OOMs, the others exit 75 because a peer vanished) the most
specific wins: permanent > preempted > retryable. When the failed pod is gone (an evicted
pod is deleted once it stops), the Job's Failed condition says which rule of its
podFailurePolicy the pod matched (builders.POD_FAILURE_POLICY), and that is read instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kubetune_api.constants import ExitCode
from kubetune_api.termination import TerminationSummary

FailureKind = Literal[
    "oom", "bad_data", "invalid_spec", "storage", "preempted", "retryable", "deadline"
]
_RANK = {"oom": 0, "bad_data": 0, "invalid_spec": 0, "storage": 0, "deadline": 0,
         "preempted": 1, "retryable": 2}  # fmt: skip
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
_PERMANENT: dict[int, tuple[FailureKind, str]] = {
    ExitCode.OOM: ("oom", "the model does not fit in memory"),
    ExitCode.BAD_DATA: ("bad_data", "the dataset failed validation"),
    ExitCode.INVALID_SPEC: ("invalid_spec", "the trainer rejected the spec"),
    ExitCode.STORAGE: ("storage", "the trainer could not write (disk full or no permission)"),
}
# The Job controller's Failed-condition messages for a FailJob rule (pkg/controller/job).
_POLICY_EXIT = re.compile(r"for pod [^/\s]+/(\S+) failed with exit code (-?\d+) matching")
_POLICY_CONDITION = re.compile(r"^Pod [^/\s]+/(\S+) has condition (\w+) matching")


@dataclass
class Failure:
    kind: FailureKind
    message: str
    exit_code: int | None = None
    pod: str | None = None
    # The pod's termination message.
    summary: TerminationSummary = field(default_factory=TerminationSummary)
    # Exit 76 of a pod that was being deleted without a DisruptionTarget: a controller
    # stopped it (the Job controller deletes the other pods once one has failed), so it
    # is a consequence of another pod's failure, never the cause.
    collateral: bool = False


@dataclass
class Observation:
    job_exists: bool = False
    complete: bool = False
    queued: bool = False  # the Job is suspended (waiting for Kueue admission)
    running: bool = False  # rank 0's pod is Running
    active: int = 0
    failure: Failure | None = None
    pod0_ip: str | None = None
    waiting: str = ""  # why pods do not run yet (Unschedulable, ImagePullBackOff...)
    # Rank 0's termination message.
    summary: TerminationSummary = field(default_factory=TerminationSummary)


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == "True":
            return cond
    return None


def pod_index(pod: dict[str, Any]) -> str | None:
    meta = pod.get("metadata") or {}
    return (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(
        INDEX_ANNOTATION
    )


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get(
            "terminated"
        )
        if term:
            return term
    return None


def classify_pod(pod: dict[str, Any]) -> Failure | None:
    """The failure of one pod, or None if it has not failed."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name")
    term = _terminated(pod)
    code = term.get("exitCode") if term else None
    failed = status.get("phase") == "Failed" or (code not in (None, 0))
    if not failed:
        return None
    summary = TerminationSummary.read(term.get("message") if term else None)
    text = summary.message or str(status.get("message") or "")
    kind: FailureKind
    if term and term.get("reason") == "OOMKilled":
        kind, text = "oom", text or "container OOMKilled"
    elif code in _PERMANENT:
        kind, default = _PERMANENT[code]
        text = text or default
    elif _cond(pod, "DisruptionTarget") or code == ExitCode.PREEMPTED:
        reason = (_cond(pod, "DisruptionTarget") or {}).get("reason") or "SIGTERM"
        kind, text = "preempted", text or f"pod disrupted ({reason})"
        deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        if deleting and not _cond(pod, "DisruptionTarget"):
            return Failure(kind, text, code, name, summary, collateral=True)
    elif status.get("reason") == "Evicted":
        kind, text = "retryable", status.get("message") or "pod evicted"
    else:
        kind, text = "retryable", text or f"trainer exited with code {code}"
    return Failure(kind, text, code, name, summary)


def policy_failure(failed: dict[str, Any]) -> Failure | None:
    """The pod failure a Job's Failed condition names when a podFailurePolicy rule matched."""
    if failed.get("reason") != "PodFailurePolicy":
        return None
    msg = str(failed.get("message") or "")
    if m := _POLICY_EXIT.search(msg):
        code = int(m.group(2))
        kind: FailureKind = _PERMANENT.get(code, ("retryable", ""))[0]
        return Failure(kind, msg, code, m.group(1))
    if (m := _POLICY_CONDITION.search(msg)) and m.group(2) == "DisruptionTarget":
        return Failure("preempted", msg, None, m.group(1))
    return None


def waiting_reason(pod: dict[str, Any]) -> str:
    """'Unschedulable: 0/3 nodes ...' or 'ImagePullBackOff: ...'; '' if nothing blocks it."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}".strip()
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting['reason']}: {waiting.get('message') or ''}".strip(": ")
    return ""


def observe(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Observation:
    obs = Observation(job_exists=job is not None)
    rank0 = [p for p in pods if pod_index(p) == "0"]
    if rank0:
        p0 = rank0[0]
        st = p0.get("status") or {}
        obs.running = st.get("phase") == "Running"
        obs.pod0_ip = st.get("podIP")
        term = _terminated(p0)
        if term:
            obs.summary = TerminationSummary.read(term.get("message"))
    obs.waiting = next((w for w in map(waiting_reason, pods) if w), "")
    failures = [f for f in (classify_pod(p) for p in pods) if f is not None]
    if failures:
        obs.failure = min(failures, key=lambda f: (f.collateral, _RANK[f.kind]))
    if job is not None:
        jst = job.get("status") or {}
        obs.active = int(jst.get("active") or 0)
        obs.complete = _cond(job, "Complete") is not None
        obs.queued = bool((job.get("spec") or {}).get("suspend")) and not obs.complete
        failed = _cond(job, "Failed")
        named = policy_failure(failed) if failed else None
        if named and (obs.failure is None or obs.failure.collateral):
            obs.failure = named  # the failed pod is gone; what is left only saw the fallout
        elif failed and obs.failure is None:
            if failed.get("reason") == "DeadlineExceeded":
                obs.failure = Failure("deadline", failed.get("message") or "deadline exceeded")
            else:
                msg = failed.get("message") or failed.get("reason") or "the Job failed"
                obs.failure = Failure("retryable", msg)
    if obs.complete:
        obs.failure = None
    return obs
