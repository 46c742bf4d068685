"""One test's world: a namespace of the shared emulator, its S3 credentials Secret, the
kubelet stand-in and the real operator process; submit a FineTuneJob YAML and wait on it.

Every wait polls with a deadline and fails with the whole picture (status, events, pods,
the tail of every container log and of the operator log), never with a bare timeout.
"""

from __future__ import annotations

import base64
import functools
import json
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubetune_api import constants as c
from tests.support.e2e.kubelet import Kubelet
from tests.support.e2e.operator_process import OperatorProcess
from tests.support.kube.cluster import EmulatorServer

FTJ = "kubetune.io/v1alpha1/finetunejobs"
JOBS_DIR = Path(__file__).resolve().parents[2] / "e2e" / "jobs"
SECRET_NAME = "s3-credentials"
# Secrets: the one the operator makes when the spec's URLs carry credentials.
CHILD_KINDS = ("batch/v1/jobs", "v1/pods", "v1/services", "v1/configmaps", "v1/secrets")


@dataclass
class World:
    cluster: EmulatorServer
    namespace: str
    workdir: Path
    s3: Any  # tests.support.servers.s3.S3Server
    bucket: str
    canary: str
    kubelet: Kubelet
    operator: OperatorProcess
    values: dict[str, str] = field(default_factory=dict)  # ${...} in the job YAMLs
    # time.monotonic() by which every wait gives up: a little before the test's own timeout,
    # so a slow test still fails with the picture below, not with pytest-timeout's dump.
    deadline: float | None = None

    # -- objects ------------------------------------------------------------------------------
    def create_secret(self) -> None:
        """The user's S3 Secret: the canary is the secret key (moto accepts any credentials)."""
        data = {
            "AWS_ACCESS_KEY_ID": "e2e-access-key",
            "AWS_SECRET_ACCESS_KEY": self.canary,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "namespace": self.namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self.cluster.create("v1/secrets", secret)

    def load(self, file: str, name: str, **values: Any) -> dict[str, Any]:
        """tests/e2e/jobs/<file> with ${...} filled in, renamed and put in our namespace."""
        text = (JOBS_DIR / file).read_text()
        text = string.Template(text).substitute({**self.values, **values})
        doc = yaml.safe_load(text)
        doc["metadata"]["name"] = name
        doc["metadata"]["namespace"] = self.namespace
        return doc

    def submit(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.cluster.create(FTJ, manifest)

    def ftj(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get(FTJ, self.namespace, name)

    def status(self, name: str) -> dict[str, Any]:
        return (self.ftj(name) or {}).get("status") or {}

    def children(self, name: str) -> dict[str, list[str]]:
        """Jobs, pods, Services, ConfigMaps and Secrets labelled as this FineTuneJob's."""
        sel = f"{c.LABEL_JOB}={name}"
        return {
            kind: [o["metadata"]["name"] for o in self.cluster.list(kind, self.namespace, sel)]
            for kind in CHILD_KINDS
        }

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.cluster.events(self.namespace, name)

    def posts(self, plural: str) -> list[dict[str, Any]]:
        """Bodies of every create (POST) of `plural` in our namespace, in order."""
        out = []
        for req in self.cluster.requests():
            path = req.url.path
            if str(req.method.value).upper() == "POST" and path.endswith(
                f"/namespaces/{self.namespace}/{plural}"
            ):
                out.append(req.data or {})
        return out

    # -- waiting ------------------------------------------------------------------------------
    def wait(
        self,
        name: str,
        accept: Callable[[dict[str, Any]], Any],
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the FineTuneJob's status until accept(status) is truthy; returns the status."""

        def probe() -> list[dict[str, Any]] | None:
            st = self.status(name)
            return [st] if accept(st) else None  # a list: an accepted {} is still found

        return self.wait_until(probe, timeout, what, name, interval=0.5)[0]

    def wait_until(
        self,
        probe: Callable[[], Any],
        timeout: float,
        what: str,
        name: str,
        interval: float = 0.2,
    ) -> Any:
        """Poll probe() until it is truthy, for `timeout` s or until the test's deadline."""
        start = time.monotonic()
        end, budget = start + timeout, False
        if self.deadline is not None and self.deadline < end:
            end, budget = self.deadline, True
        while True:
            value = probe()
            if value:
                return value
            self.check_harness()
            if time.monotonic() >= end:
                break
            time.sleep(interval)
        why = " (the test's time budget ran out)" if budget else ""
        raise AssertionError(
            f"timed out after {time.monotonic() - start:.0f} s waiting for {what}{why}\n"
            + self.report(name)
        )

    def finished(self, name: str, timeout: float = 240) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") in c.Phase.FINISHED, timeout, "the end")

    def succeeded(self, name: str, timeout: float = 240) -> dict[str, Any]:
        st = self.finished(name, timeout)
        assert st["phase"] == c.Phase.SUCCEEDED, "the job did not succeed\n" + self.report(name)
        return st

    def check_harness(self) -> None:
        if self.kubelet.errors:
            raise AssertionError("the kubelet stand-in failed:\n" + self.kubelet.errors[-1])

    def report(self, name: str) -> str:
        """Everything that explains where a job is: for failure messages."""
        lines = [f"status: {json.dumps(self.status(name), indent=1)}"]
        lines.append("events: " + "; ".join(
            f"{e.get('reason')}: {e.get('message')}" for e in self.events(name)))  # fmt: skip
        for pod in self.kubelet.pods():
            st = pod.get("status") or {}
            cs = (st.get("containerStatuses") or [{}])[0].get("state")
            lines.append(f"pod {pod['metadata']['name']}: {st.get('phase')} {json.dumps(cs)}")
        lines += [f"container {line}" for line in self.kubelet.timeline()]
        for pod_name, log in self.kubelet.logs().items():
            tail = "\n    ".join(log.splitlines()[-25:])
            lines.append(f"--- log of {pod_name} (last 25 lines):\n    {tail}")
        lines.append(f"--- operator log (last 30 lines):\n{self.operator.tail(30)}")
        return "\n".join(lines)

    # -- S3 -----------------------------------------------------------------------------------
    @functools.cached_property
    def s3_client(self) -> Any:
        """One boto3 client for the test (creating one per poll costs more than the poll)."""
        return self.s3.client()

    def s3_keys(self, prefix: str) -> list[str]:
        s3 = self.s3_client
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)

    def s3_json(self, key: str) -> Any:
        return json.loads(self.s3_client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def run_prefix(self, name: str) -> str:
        """Where a job of ours writes: <output uri>/<namespace>/<name>/ (see the job YAMLs)."""
        return f"runs/{self.namespace}/{name}/"

    def committed_steps(self, name: str) -> list[int]:
        """Steps of the checkpoints whose MANIFEST.json (the commit marker) exists."""
        prefix = self.run_prefix(name) + "checkpoints/"
        steps = []
        for key in self.s3_keys(prefix):
            rest = key[len(prefix) :]
            if rest.endswith("/MANIFEST.json") and rest.startswith("step-"):
                steps.append(int(rest.split("/")[0].removeprefix("step-")))
        return sorted(steps)

    # -- pods ---------------------------------------------------------------------------------
    def pods_of(self, name: str, attempt: int) -> list[dict[str, Any]]:
        return sorted(
            self.kubelet.pods(f"{name}-a{attempt}"),
            key=lambda p: p["metadata"]["annotations"].get(
                "batch.kubernetes.io/job-completion-index", ""
            ),
        )

    def pod_history(self, job_name: str) -> list[dict[str, Any]]:
        """Every version the API stored of the pods of Job `job_name`, oldest first (the
        emulator's watch history): what a pod showed stays readable after garbage
        collection deleted it with its Job, which the operator does within a second."""
        assert self.cluster.emu is not None
        versions = []
        for _rv, res, event in list(self.cluster.emu.log):
            meta = event["object"].get("metadata") or {}
            if (
                res.plural == "pods"
                and meta.get("namespace") == self.namespace
                and (meta.get("labels") or {}).get("job-name") == job_name
            ):
                versions.append(event["object"])
        return versions

    def log_of(self, pod_name: str) -> str:
        return self.kubelet.container(pod_name).log()

    def terminated(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The pod's container `terminated` state (exit code, reason, message)."""
        state = pod["status"]["containerStatuses"][0]["state"]
        assert "terminated" in state, f"{pod['metadata']['name']} has not ended: {state}"
        return dict(state["terminated"])

    # -- secrets ------------------------------------------------------------------------------
    def assert_no_canary(self, **extra: Any) -> None:
        """The Secret's value is nowhere: API objects, logs, S3 (see tests/support/e2e/audit.py)."""
        from tests.support.e2e.audit import find_canary

        logs = {**self.kubelet.logs(), "operator": self.operator.log()}
        leaks = find_canary(self.canary, self.cluster, logs, self.s3, self.bucket, **extra)
        assert not leaks, f"the secret value leaked into: {leaks}"
