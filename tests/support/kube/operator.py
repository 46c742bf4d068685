"""Operator-test support, also a pytest plugin (loaded by tests/conftest.py): the fixtures
`cluster` (the API emulator with the real CRD), `operator` (kopf running against it) and
`rank0_metrics` (a trainer-like /metrics endpoint); FineTuneJob manifests from
tests/operator/*.yaml; and the reads the operator tests share (status, cond, posts...)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from kubetune_api.constants import TrainerMetric
from kubetune_operator import builders as b
from kubetune_operator.config import OperatorConfig
from kubetune_operator.decide import Inputs
from kubetune_operator.observe import Observation, observe
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.job_play import create_pods, set_running
from tests.support.net import free_port

HERE = Path(__file__).resolve().parents[2] / "operator"  # the FineTuneJob manifests
NS = "team-a"
JOBS = "batch/v1/jobs"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path) as c:
        c.apply_crd()
        c.create_namespace(NS)
        yield c


@pytest.fixture
def operator(cluster: EmulatorServer) -> Iterator[EmulatorServer]:
    with run_operator(
        cluster,
        namespaces=[NS],
        config=OperatorConfig(
            reconcile_interval=0.5,
            status_interval=0.5,
            metrics_port=None,
            image="registry.test/trainer:1",
        ),
    ):
        yield cluster


def op_metric(cluster: EmulatorServer, name: str, **labels: str) -> float:
    """One of the running operator's own metrics (0 before it exists)."""
    memo: kopf.Memo = cluster.op_memo
    metrics = memo.get("metrics") if memo is not None else None
    if metrics is None:
        return 0.0
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


def reconciles(cluster: EmulatorServer) -> float:
    """How many reconciles the running operator has finished."""
    return op_metric(cluster, "kubetune_reconcile_seconds_count")


def load_ftj(name: str = "ftj-basic.yaml", **overrides: Any) -> dict[str, Any]:
    """A FineTuneJob from tests/operator/*.yaml, with spec sections merged over it."""
    doc = yaml.safe_load((HERE / name).read_text())
    doc = copy.deepcopy(doc)
    for key, value in overrides.items():
        if key == "name":
            doc["metadata"]["name"] = value
        elif isinstance(value, dict):
            doc["spec"].setdefault(key, {}).update(value)
        else:
            doc["spec"][key] = value
    return doc


def status(cluster: EmulatorServer, name: str = "llama-lora") -> dict:
    return (cluster.get(FTJ, NS, name) or {}).get("status") or {}


def cond(st: dict, ctype: str) -> dict:
    return next((x for x in st.get("conditions", []) if x["type"] == ctype), {})


def posts(cluster: EmulatorServer, plural: str) -> list:
    """Every create of this kind (the test's too)."""
    return [
        r
        for r in cluster.requests()
        if r.method.value == "POST" and r.url.path.endswith(f"/{plural}")
    ]


@pytest.fixture
def rank0_metrics() -> Iterator[tuple[int, dict[str, Gauge]]]:
    """Rank 0's /metrics as the trainer serves it (prometheus_client, own registry)."""
    reg = CollectorRegistry()
    # tokens_total is a counter in the trainer; its value is what counts.
    gauges = {n: Gauge(n, n, registry=reg) for n in TrainerMetric.OPERATOR_READS}
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    yield port, gauges
    server.shutdown()
    server.server_close()
    thread.join(5)


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric from Prometheus text: {sorted label pairs: value}."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def start_attempt(cluster: EmulatorServer, **overrides: object) -> list[dict]:
    """Create the FineTuneJob, wait for attempt 1's Job, play its pods into Running."""
    cluster.create(FTJ, load_ftj(**overrides))
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="attempt 1's Job")
    pods = create_pods(cluster, NS, "llama-lora-a1")
    for pod in pods:
        set_running(cluster, NS, pod, "127.0.0.1")
    wait_for(lambda: status(cluster).get("phase") == "Running", what="Running")
    return pods


def phase_is(cluster: EmulatorServer, phase: str) -> dict | None:
    st = status(cluster)
    return st if st.get("phase") == phase else None


def operator_posts(cluster: EmulatorServer, plural: str) -> list:
    """The operator's own creates of this kind (not the test's) that created something: a
    create answered 409 (the name is taken) is how the operator finds a foreign object."""
    return [
        r
        for r in cluster.requests()
        if r.method.value == "POST" and r.url.path.endswith(f"/{plural}")
        and r.headers.get("User-Agent") == "kubetune-operator"
        and cluster.emu.statuses.get(r.id) != 409
    ]  # fmt: skip


LEASE_NS = "kubetune"  # the operator's own namespace (the chart's release namespace)
OWNER = b.Owner(name="llama-lora", namespace="team-a", uid="uid-1")


NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def pod(
    index: int,
    code: int | None,
    reason: str | None = None,
    disrupted: bool = False,
    message: str | None = None,
) -> dict:
    st: dict = {"phase": "Running" if code is None else ("Failed" if code else "Succeeded")}
    if code is not None:
        term = {"exitCode": code, "reason": reason or "Error"}
        if message:
            term["message"] = message
        st["containerStatuses"] = [{"state": {"terminated": term}}]
    if disrupted:
        st["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "Preempted"}]
    return {
        "metadata": {
            "name": f"p{index}",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": st,
    }


def failed_job(reason: str, message: str) -> dict:
    cond = {"type": "Failed", "status": "True", "reason": reason, "message": message}
    return {"spec": {}, "status": {"failed": 1, "conditions": [cond]}}


def inputs(status: dict | None, obs: Observation | None, **spec_overrides: object) -> Inputs:
    spec = load_ftj(**spec_overrides)["spec"]
    return Inputs(
        name="llama-lora",
        namespace="team-a",
        generation=1,
        spec=spec,
        accepted_spec=spec if status else None,
        status=status,
        observation=obs,
        progress=None,
        now=NOW,
    )


def failing(code: int) -> Observation:
    return observe({"spec": {}, "status": {}}, [pod(0, code)])
