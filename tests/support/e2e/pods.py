"""Pure pieces of the kubelet/Job-controller stand-in (kubelet.py): the Pod an Indexed
Job creates, a container's environment as the kubelet resolves it, and pod/Job statuses.

Nothing here talks to the API or starts processes, so each rule can be read next to the
Kubernetes behaviour it copies.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
# Stands for graceful deletion, which the emulator lacks: a deleted pod keeps existing
# (with deletionTimestamp) until its processes are gone, exactly as on a real node.
KUBELET_FINALIZER = "e2e.kubetune.io/kubelet"
NODE_NAME = "e2e-node"
POD_IP = "127.0.0.1"
# Kubernetes keeps at most this much of a termination message, and for
# FallbackToLogsOnError the smaller of the last 80 log lines or 2048 bytes.
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the Job controller: one Pod per completion index -------------------------------------------
def pod_for_index(job: Obj, index: int) -> Obj:
    """The Pod the Job controller creates for `index` of an Indexed Job (scheduled at once)."""
    meta, tmpl = job["metadata"], job["spec"]["template"]
    name, uid = meta["name"], meta["uid"]
    tmeta = tmpl.get("metadata") or {}
    labels = {
        **(tmeta.get("labels") or {}),
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
        INDEX_KEY: str(index),
    }
    spec = copy.deepcopy(tmpl["spec"])
    spec["hostname"] = f"{name}-{index}"  # Indexed Job pods are reachable as <job>-<index>
    spec["nodeName"] = NODE_NAME  # the scheduler's part: one node for everything
    index_env = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}},
    }
    for c in spec.get("containers") or []:
        c["env"] = [*(c.get("env") or []), index_env]  # as the Job controller injects it
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-{index}-",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {**(tmeta.get("annotations") or {}), INDEX_KEY: str(index)},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "finalizers": [KUBELET_FINALIZER],
        },
        "spec": spec,
    }


def pod_index(pod: Obj) -> int:
    return int(((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_KEY, -1))


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def job_status(job: Obj, pods: list[Obj], lost: int, old: Obj) -> Obj:
    """What the Job controller writes for `pods` (+ `lost`: pods deleted before they ended).

    backoffLimit counts failed pods (restartPolicy Never: one failure per pod); a Job
    whose every index succeeded is Complete; one over backoffLimit is Failed. A failed pod
    matching a podFailurePolicy rule is handled by its action: FailJob fails the Job with
    reason PodFailurePolicy and the controller's message, Ignore does not count it.
    """
    spec = job["spec"]
    completions = int(spec.get("completions") or 1)
    succeeded = {pod_index(p) for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"}
    verdicts = [
        policy_match(spec.get("podFailurePolicy"), p)
        for p in pods
        if (p.get("status") or {}).get("phase") == "Failed"
    ]
    failed = lost + sum(1 for v in verdicts if v is None or v[0] != "Ignore")
    fail_job = next((v[1] for v in verdicts if v and v[0] == "FailJob"), None)
    active = [p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
    ready = sum(1 for p in active if (p.get("status") or {}).get("phase") == "Running")
    st: Obj = {
        "active": len(active),
        "ready": ready,
        "succeeded": len(succeeded),
        "failed": failed,
        "uncountedTerminatedPods": {},
        "completedIndexes": ",".join(str(i) for i in sorted(succeeded)),
        "startTime": old.get("startTime") or now(),
    }
    conditions = [c for c in old.get("conditions") or [] if c.get("type") not in ("Suspended",)]
    finished = {c["type"] for c in conditions if c.get("status") == "True"}
    if "Complete" not in finished and "Failed" not in finished:
        if len(succeeded) >= completions:
            t = now()
            msg = "Reached expected number of succeeded pods"
            conditions += [
                _cond("SuccessCriteriaMet", "CompletionsReached", msg),
                _cond("Complete", "CompletionsReached", msg),
            ]
            st["completionTime"] = t
        elif fail_job is not None:
            conditions += [
                _cond("FailureTarget", "PodFailurePolicy", fail_job),
                _cond("Failed", "PodFailurePolicy", fail_job),
            ]
        elif failed > int(spec.get("backoffLimit", 6)):
            msg = "Job has reached the specified backoff limit"
            conditions += [
                _cond("FailureTarget", "BackoffLimitExceeded", msg),
                _cond("Failed", "BackoffLimitExceeded", msg),
            ]
    if spec.get("suspend"):
        conditions.append(_cond("Suspended", "JobSuspended", "Job suspended"))
    if old.get("completionTime"):
        st["completionTime"] = old["completionTime"]
    if conditions:
        st["conditions"] = conditions
    return st


def policy_match(policy: Obj | None, pod: Obj) -> tuple[str, str] | None:
    """(action, FailJob message) of the first podFailurePolicy rule a failed pod matches.

    Messages as the Job controller writes them (pkg/controller/job/pod_failure_policy.go).
    """
    meta, st = pod["metadata"], pod.get("status") or {}
    where = f"{meta.get('namespace')}/{meta['name']}"
    for index, rule in enumerate((policy or {}).get("rules") or []):
        action = rule["action"]
        if codes := rule.get("onExitCodes"):
            for cs in st.get("containerStatuses") or []:
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0) or codes.get("containerName") not in (None, cs["name"]):
                    continue
                if (code in codes["values"]) == (codes["operator"] == "In"):
                    return action, (
                        f"Container {cs['name']} for pod {where} failed with exit code {code} "
                        f"matching {action} rule at index {index}"
                    )
        for pattern in rule.get("onPodConditions") or []:
            for cond in st.get("conditions") or []:
                if cond["type"] == pattern["type"] and cond["status"] == pattern["status"]:
                    return action, (
                        f"Pod {where} has condition {cond['type']} matching {action} rule at "
                        f"index {index}"
                    )
    return None


def job_finished(job: Obj) -> str | None:
    """'Complete' or 'Failed' once the Job has that condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def _cond(ctype: str, reason: str, message: str) -> Obj:
    t = now()
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": t, "lastTransitionTime": t}  # fmt: skip


# -- the kubelet: a container's files and environment ---------------------------------------
@dataclass(frozen=True)
class LocalImage:
    """What an image stands for on this machine: its PATH, its ENV lines and WORKDIR."""

    bin_dir: Path
    env: dict[str, str]
    entrypoint: tuple[str, ...] = ()
    workdir: str = "/workspace"


@dataclass
class PodFiles:
    """The local stand-ins of a pod's volumes and of its termination-message file."""

    root: Path
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> local path
    termination_log: Path | None = None
    termination_path: str = ""  # the container's terminationMessagePath

    def remap(self, value: str) -> str:
        """A container path under a mount -> the same path in the local stand-in."""
        if self.termination_log is not None and value == self.termination_path:
            return str(self.termination_log)
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + value[len(mount.rstrip("/")) :]
        return value


class MissingReference(Exception):
    """A Secret/ConfigMap (or key) the pod needs does not exist: CreateContainerConfigError."""


def secret_data(secret: Obj) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


_FIELD = re.compile(r"^metadata\.(annotations|labels)\['([^']+)'\]$")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def field_ref(pod: Obj, path: str) -> str:
    """The downward API: the fieldRef paths Kubernetes supports for env."""
    meta = pod.get("metadata") or {}
    m = _FIELD.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": POD_IP,
        "status.hostIP": POD_IP,
    }
    if path not in simple:
        raise MissingReference(f"unsupported fieldRef {path}")
    return str(simple[path] or "")


def container_env(
    pod: Obj,
    container: Obj,
    image: LocalImage,
    secrets: dict[str, Obj],
    configmaps: dict[str, Obj],
) -> dict[str, str]:
    """The environment the container starts with: image ENV, then envFrom, then env.

    Later sources win, as in Kubernetes; `$(VAR)` in a value expands earlier variables.
    """
    env = dict(image.env)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        ref = src.get("secretRef") or src.get("configMapRef") or {}
        store = secrets if "secretRef" in src else configmaps
        obj = store.get(ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise MissingReference(f"{'secret' if store is secrets else 'configmap'} "
                                   f"{ref.get('name')!r} not found")  # fmt: skip
        data = secret_data(obj) if store is secrets else dict(obj.get("data") or {})
        env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            is_secret = "secretKeyRef" in source
            obj = (secrets if is_secret else configmaps).get(ref["name"])
            data = (secret_data(obj) if is_secret else obj.get("data") or {}) if obj else None
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise MissingReference(f"key {ref['key']!r} of {ref['name']!r} not found")
            env[name] = data[ref["key"]]
        else:
            raise MissingReference(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


def fallback_message(log_text: str) -> str:
    """FallbackToLogsOnError: the last 80 lines or 2048 bytes of the log, whichever is less."""
    tail = "\n".join(log_text.splitlines()[-FALLBACK_LINES:])
    return tail.encode()[-FALLBACK_BYTES:].decode("utf-8", "replace")


# -- pod statuses ----------------------------------------------------------------------------
def _pod_conditions(ready: bool, started: str) -> list[Obj]:
    flag = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now()},
        {"type": "Ready", "status": flag, "lastTransitionTime": now()},
    ]


def _container_status(c: Obj, state: Obj, ready: bool, container_id: str = "") -> Obj:
    out: Obj = {
        "name": c["name"],
        "image": c.get("image", ""),
        "ready": ready,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }
    if container_id:
        out["containerID"] = container_id
    return out


def pending_status(pod: Obj, reason: str = "ContainerCreating", message: str = "") -> Obj:
    c = pod["spec"]["containers"][0]
    started = now()
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {
        "phase": "Pending",
        "hostIP": POD_IP,
        "startTime": started,
        "conditions": _pod_conditions(False, started),
        "containerStatuses": [_container_status(c, {"waiting": waiting}, ready=False)],
    }


def running_status(pod: Obj, started: str, container_id: str) -> Obj:
    c = pod["spec"]["containers"][0]
    return {
        "phase": "Running",
        "hostIP": POD_IP,
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": started,
        "conditions": _pod_conditions(True, started),
        "containerStatuses": [
            _container_status(c, {"running": {"startedAt": started}}, True, container_id)
        ],
    }


def terminated_status(
    pod: Obj,
    started: str,
    container_id: str,
    exit_code: int,
    message: str,
    disruption: Obj | None = None,
) -> Obj:
    """The final status: Succeeded on exit code 0, Failed otherwise.

    `disruption` is the DisruptionTarget condition of a pod the node terminated (graceful
    node shutdown / preemption): such a pod stays listed as Failed with that condition.
    """
    c = pod["spec"]["containers"][0]
    term = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": started,
        "finishedAt": now(),
        "containerID": container_id,
    }
    if message:
        term["message"] = message[-TERMINATION_MESSAGE_LIMIT:]
    st: Obj = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "hostIP": POD_IP,
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": started,
        "conditions": _pod_conditions(False, started),
        "containerStatuses": [_container_status(c, {"terminated": term}, False, container_id)],
    }
    if disruption is not None:
        st["conditions"].append(disruption)
        st["reason"] = "Terminated"
        st["message"] = disruption.get("message", "")
    return st


def disruption_condition(reason: str, message: str) -> Obj:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": now()}  # fmt: skip
