"""HA with real operator processes: leader election through a Lease (kubetune_operator.leader),
started with exactly the arguments the Helm chart renders."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest
import yaml

from kubetune_operator.leader import LOST_EXIT_CODE, serve_health
from tests.support.chart import helpers
from tests.support.kube.cluster import FTJ, EmulatorServer, api_path, wait_for
from tests.support.kube.operator import LEASE_NS, NS, load_ftj
from tests.support.net import free_port

LEASES = "coordination.k8s.io/v1/leases"


def chart_operator_args(mounts: Path, *sets: str) -> list[str]:
    """The operator container's args, as the real helm renders the chart; its ConfigMap
    volumes are written under `mounts` as the kubelet would mount them, and the args point
    there instead of the pod's paths."""
    cmd = [helpers.find_tool("helm"), "template", helpers.RELEASE, str(helpers.CHART)]
    cmd += ["--namespace", LEASE_NS]
    for s in sets:
        cmd += ["--set", s]
    manifests = [d for d in yaml.safe_load_all(helpers.run(cmd).stdout) if d]
    pod = helpers.one(manifests, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    configmaps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    args = container["args"]
    for mount in container.get("volumeMounts", []):
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        if "configMap" not in volume:
            continue  # emptyDir /tmp: this host's own
        here = mounts / mount["name"]
        here.mkdir(parents=True, exist_ok=True)
        for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
            (here / key).write_text(text)
        args = [a.replace(mount["mountPath"], str(here)) for a in args]
    return args


def on_this_host(args: list[str]) -> list[str]:
    """Two "pods" on one host: each its own free loopback ports (the only change)."""
    ports = {"--metrics-port": free_port(), "--liveness-port": free_port()}
    out = [
        f"{a.split('=')[0]}={ports[a.split('=')[0]]}" if a.split("=")[0] in ports else a
        for a in args
    ]
    return [*out, "--bind=127.0.0.1", "--reconcile-interval=0.5"]


def start_operator(cluster: EmulatorServer, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "kubetune_operator", *args]
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def identity_of(log: Path) -> str | None:
    found = re.search(r"waiting for the lease \S+ as (\S+)", log.read_text())
    return found.group(1) if found else None


def healthy(args: list[str]) -> bool:
    port = next(a.split("=")[1] for a in args if a.startswith("--liveness-port="))
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_two_replicas_from_the_chart_one_acts_and_fails_over(cluster: EmulatorServer):
    """HA with exactly what the chart runs for replicaCount=2: one replica acts, the other
    stands by (healthy, creating nothing); SIGKILL the active one and the standby creates
    the next FineTuneJob's Job within 30 s (leaseDurationSeconds 15 + retry + kopf start)."""
    args = chart_operator_args(cluster.workdir / "mounts", "replicaCount=2")
    assert "--standalone" not in args
    cluster.create_namespace(LEASE_NS)
    logs = [cluster.workdir / f"operator-{i}.log" for i in (0, 1)]
    pods = [on_this_host(args) for _ in logs]
    procs = [start_operator(cluster, a, log) for a, log in zip(pods, logs, strict=True)]
    try:
        # Both replicas up (as the kubelet sees them), then a FineTuneJob for them.
        for pod in pods:
            wait_for(lambda pod=pod: healthy(pod), 30, "both replicas' /healthz")
        time.sleep(2)  # replicas see each other (a retry period)
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), 30, "the first Job")
        ids = [identity_of(log) for log in logs]
        name = f"{helpers.RELEASE}-kubetune"  # the chart names the Lease after the release
        lease = lambda: cluster.get(LEASES, LEASE_NS, name) or {}  # noqa: E731
        holder = lease()["spec"]["holderIdentity"]
        assert holder in ids and None not in ids, (holder, ids)
        active, standby = (0, 1) if holder == ids[0] else (1, 0)
        assert healthy(pods[standby])  # a standby is alive: the kubelet must not restart it
        # The leader's /healthz includes its scheduler, which follows the one job.
        port = next(a.split("=")[1] for a in pods[active] if a.startswith("--liveness-port="))
        probe = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        assert probe["scheduler"]["jobs"] == 1, probe
        time.sleep(1)  # a second replica acting would have posted its Job by now
        posts = [
            r
            for r in cluster.requests()
            if r.method.value == "POST" and r.url.path.endswith("/jobs")
        ]
        assert len(posts) == 1
        # The standby never started kopf (its start-up handler logs this line).
        assert "kubetune operator configured" in logs[active].read_text()
        assert "kubetune operator configured" not in logs[standby].read_text()
        # Failover: the active replica dies without releasing anything.
        procs[active].send_signal(signal.SIGKILL)
        procs[active].wait(10)
        killed = time.monotonic()
        second = load_ftj()
        second["metadata"]["name"] = "llama-lora-2"
        cluster.create(FTJ, second)
        wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-2-a1"), 60, "the failover")
        failover = time.monotonic() - killed
        print(f"\nfailover: the standby created the next Job {failover:.1f} s after SIGKILL")
        assert failover < 30, f"failover took {failover:.1f} s (the issue's bound is 30 s)"
        assert lease()["spec"]["holderIdentity"] == ids[standby]
        assert lease()["spec"]["leaseTransitions"] == 1
        # A clean stop releases the Lease at once (a standby would take it without waiting).
        procs[standby].send_signal(signal.SIGTERM)
        assert procs[standby].wait(30) == 0, logs[standby].read_text()[-3000:]
        assert not lease()["spec"].get("holderIdentity")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_deposed_leader_exits_at_once(cluster: EmulatorServer):
    """Another replica took the Lease (e.g. this one was paused past the lease duration):
    the process exits with leader.LOST_EXIT_CODE, before it can create another Job."""
    log = cluster.workdir / "operator.log"
    args = ["--namespace", NS, f"--lease-namespace={LEASE_NS}", "--lease-duration=3",
            "--renew-deadline=2", "--retry-period=0.5", "--metrics-port=0",
            "--liveness-port=0"]  # fmt: skip
    proc = start_operator(cluster, args, log)
    try:
        lease = wait_for(lambda: cluster.get(LEASES, LEASE_NS, "kubetune-operator"), 30, "a leader")
        lease["spec"]["holderIdentity"] = "someone-else"
        taken = cluster.call("PUT", api_path(LEASES, LEASE_NS, "kubetune-operator"), lease)
        assert taken.status_code == 200, taken.text
        assert proc.wait(10) == LOST_EXIT_CODE, log.read_text()[-2000:]
        assert "lost the leader lease" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    "timings",
    [["--lease-duration=10", "--renew-deadline=10"], ["--renew-deadline=2", "--retry-period=2"]],
)
def test_lease_timings_that_cannot_work_are_refused(timings: list[str], capsys):
    from kubetune_operator.__main__ import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(["--namespace", NS, *timings])
    assert exit_.value.code == 2
    assert "--lease-duration, --renew-deadline, --retry-period" in capsys.readouterr().err


def test_a_standby_creates_nothing_stays_healthy_and_stops_on_sigterm(cluster: EmulatorServer):
    """Another replica holds a fresh Lease: this one serves /healthz (the kubelet must not
    restart it), never starts kopf, and exits 0 at once on SIGTERM."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": "the-leader", "leaseDurationSeconds": 60, "renewTime": now}
    meta = {"name": "kubetune-operator", "namespace": LEASE_NS}
    cluster.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": meta, "spec": spec})  # fmt: skip
    log = cluster.workdir / "operator.log"
    args = [f"--namespace={NS}", f"--lease-namespace={LEASE_NS}", "--metrics-port=0"]
    args = on_this_host([*args, "--liveness-port=0"])  # free ports
    proc = start_operator(cluster, args, log)
    try:
        wait_for(lambda: healthy(args), 30, "the standby's /healthz")
        cluster.create(FTJ, load_ftj())
        time.sleep(3)
        assert cluster.get("batch/v1/jobs", NS, "llama-lora-a1") is None
        assert "kubetune operator configured" not in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()[-2000:]
        lease = cluster.get(LEASES, LEASE_NS, "kubetune-operator")
        assert lease["spec"]["holderIdentity"] == "the-leader"  # a standby releases nothing
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_healthz_answers_503_with_the_reason_when_its_check_fails():
    """The leader's /healthz fails (the kubelet restarts the pod) once its scheduler is gone,
    and answers what the check returns while it runs; a standby has no check to fail."""
    state: dict[str, Any] = {"alive": True}

    def check() -> dict[str, Any]:
        if not state["alive"]:
            raise kopf.PermanentError("the scheduler's loop is not running: no job is followed")
        return {"scheduler": {"jobs": 3, "passes": 0}}

    async def scenario() -> list[tuple[int, Any]]:
        port = free_port()
        server = await serve_health("127.0.0.1", port, check)
        out = []
        try:
            async with httpx.AsyncClient() as client:
                for alive in (True, False):
                    state["alive"] = alive
                    r = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                    out.append((r.status_code, r.json()))
        finally:
            server.close()
            await server.wait_closed()
        return out

    ok, failed = asyncio.run(scenario())
    assert ok == (200, {"scheduler": {"jobs": 3, "passes": 0}})
    assert failed[0] == 503 and "no job is followed" in failed[1]
