"""Play the Job controller and the kubelet by hand, through the API: create a Job's pods
(named, labelled and owned as the real controller does) and write pod/Job statuses.

The e2e harness runs real processes; these tests only need the observable states.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.support.kube.cluster import EmulatorServer

INDEX = "batch.kubernetes.io/job-completion-index"


def create_pods(cluster: EmulatorServer, ns: str, job_name: str) -> list[dict[str, Any]]:
    """One pod per completion index, from the Job's template, owned by the Job."""
    job = cluster.get("batch/v1/jobs", ns, job_name)
    assert job is not None, f"no Job {job_name}"
    tmpl = job["spec"]["template"]
    pods = []
    for i in range(int(job["spec"]["completions"])):
        labels = {
            **tmpl["metadata"]["labels"],
            INDEX: str(i),
            "batch.kubernetes.io/job-name": job_name,
        }
        pod = {
            "metadata": {
                "name": f"{job_name}-{i}-{secrets.token_hex(3)[:5]}",
                "labels": labels,
                "annotations": {INDEX: str(i)},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {**tmpl["spec"], "hostname": f"{job_name}-{i}"},
        }
        pods.append(cluster.create("v1/pods", pod, ns))
    return pods


def set_running(cluster: EmulatorServer, ns: str, pod: dict[str, Any], ip: str) -> None:
    status = {
        "phase": "Running",
        "podIP": ip,
        "containerStatuses": [{"name": "trainer", "ready": True, "state": {"running": {}}}],
    }
    cluster.patch("v1/pods", ns, pod["metadata"]["name"], {"status": status}, status=True)


def set_terminated(
    cluster: EmulatorServer,
    ns: str,
    pod: dict[str, Any],
    exit_code: int,
    message: dict[str, Any] | str | None = None,
    reason: str | None = None,
    disruption: bool = False,
) -> None:
    text = json.dumps(message) if isinstance(message, dict) else message
    term: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
    }
    if text:
        term["message"] = text
    status: dict[str, Any] = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [{"name": "trainer", "state": {"terminated": term}}],
    }
    if disruption:
        status["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
        ]
    cluster.patch("v1/pods", ns, pod["metadata"]["name"], {"status": status}, status=True)


def set_job_status(cluster: EmulatorServer, ns: str, name: str, **status: Any) -> None:
    """e.g. active=2, or conditions=[{"type": "Complete", "status": "True"}]."""
    cluster.patch("batch/v1/jobs", ns, name, {"status": status}, status=True)


def job_env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}
