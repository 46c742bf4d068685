"""The operator image (built by `make images`) run as the chart runs it: UID 1000, read-only
root, /tmp the only writable mount, host network. It reaches the API emulator through a
kubeconfig, serves /healthz and /metrics, and creates the Job of a FineTuneJob."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.containers import Mount, Rootfs, run, start
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.operator import NS, load_ftj
from tests.support.net import free_port

pytestmark = [pytest.mark.images]

PROBE = """
for d in / /opt/kubetune /etc /var/tmp /tmp /cache; do
  if touch "$d/.probe" 2>/dev/null; then echo "writable $d"; rm -f "$d/.probe"; fi
done
echo "uid=$(id -u) gid=$(id -g) pid=$$"
python -c "import kubetune_operator, kopf, importlib.util as u
print('torch', u.find_spec('torch'))"
"""


def test_runs_as_uid_1000_on_a_read_only_root_without_torch(
    operator_image: Rootfs, volumes
) -> None:
    code, out = run(operator_image, ["sh", "-c", PROBE], mounts=[Mount(volumes["/tmp"], "/tmp")])
    assert code == 0, out
    assert "uid=1000 gid=1000 pid=1" in out and "torch None" in out, out
    assert [line for line in out.splitlines() if line.startswith("writable")] == ["writable /tmp"]


def get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return None


def test_operator_container_reaches_the_api_and_creates_the_job(
    operator_image: Rootfs,
    cluster: EmulatorServer,
    volumes,
) -> None:
    metrics, health = free_port(), free_port()
    log = Path(volumes["/tmp"]).parent / "operator.log"
    with log.open("wb") as out:
        container = start(
            operator_image,
            args=[
                "--namespace",
                NS,
                "--bind",
                "127.0.0.1",
                f"--metrics-port={metrics}",
                f"--liveness-port={health}",
                "--reconcile-interval",
                "0.5",
            ],
            # The opt-in allocator: the image's libjemalloc2, re-executed onto.
            env={"KUBECONFIG": "/etc/kubetune/kubeconfig", "KUBETUNE_ALLOCATOR": "jemalloc"},
            mounts=[
                Mount(volumes["/tmp"], "/tmp"),
                Mount(Path(cluster.kubeconfig), "/etc/kubetune/kubeconfig", readonly=True),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: (r := get(health, "/healthz")) is not None and r.status_code == 200,
            timeout=60,
            what=f"/healthz of the operator container\n{log.read_text()[-3000:]}",
        )
        cluster.create(FTJ, load_ftj())
        job = wait_for(
            lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"),
            timeout=30,
            what=f"the Job\n{log.read_text()[-3000:]}",
        )
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["launch"]
        text = wait_for(
            lambda: (r := get(metrics, "/metrics")) and 'phase="Pending"} 1.0' in r.text and r.text,
            what="operator metrics",
        )
        assert "kubetune_reconcile_seconds_bucket" in text
        assert "memory allocator: jemalloc" in log.read_text()
        container.signal(signal.SIGTERM)
        code = container.wait(60)
    finally:
        container.kill_all()
        container.delete()
    assert code == 0, log.read_text()[-3000:]
