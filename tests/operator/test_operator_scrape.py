"""Rank 0's /metrics is not trusted: the real operator process follows a job whose trainer
serves a 300 MB body, then `+Inf`/`NaN` values, and stays within its chart memory limit
with its follow loop alive (status still updated afterwards)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import create_pods, set_running
from tests.support.kube.operator import NS, load_ftj, status
from tests.support.net import free_port

# Half the chart's resources.limits.memory for the operator (512Mi, charts/kubetune/values.yaml,
# twice what a replica taking over 5000 running jobs holds): a trainer's huge /metrics must
# cost far less than that.
MEMORY_BOUND = 256 * 1024 * 1024
BIG = 300 * 1024 * 1024
CHUNK = (b"# padding " + b"x" * 1013 + b"\n") * 1024  # 1 MiB of valid exposition text


class Rank0:
    """A trainer's /metrics that misbehaves on demand: `mode` is "big" or a text body."""

    def __init__(self) -> None:
        self.mode: str = "big"
        self.served = {"big": 0, "text": 0}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mode = outer.mode
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                if mode == "big":
                    # Streamed, never built in memory; no Content-Length (chunk-free close).
                    self.end_headers()
                    outer.served["big"] += 1
                    with contextlib.suppress(OSError):
                        for _ in range(BIG // len(CHUNK)):
                            self.wfile.write(CHUNK)
                    return
                body = mode.encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.served["text"] += 1

            def log_message(self, *args: object) -> None:
                pass

        Handler.protocol_version = "HTTP/1.0"  # the body ends when the connection closes
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Rank0:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def operator_process(cluster: EmulatorServer) -> Iterator[subprocess.Popen]:
    """`python -m kubetune_operator` as the chart runs it, against the emulator."""
    health = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    cmd = [sys.executable, "-m", "kubetune_operator", "--namespace", NS, "--bind", "127.0.0.1",
           "--metrics-port", "0", "--liveness-port", str(health),
           "--reconcile-interval", "0.5", "--status-interval", "0.5"]  # fmt: skip
    log = cluster.workdir / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=30, what=f"/healthz\n{log.read_text()[-2000:]}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def peak_rss(pid: int) -> int:
    """VmHWM: the highest resident set size the process has had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_huge_and_infinite_metrics_neither_exhaust_nor_stop_the_operator(cluster):
    with Rank0() as rank0, operator_process(cluster) as proc:
        cluster.create(FTJ, load_ftj(metrics={"port": rank0.port}))
        wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")
        for pod in create_pods(cluster, NS, "llama-lora-a1"):
            set_running(cluster, NS, pod, "127.0.0.1")
        wait_for(lambda: status(cluster).get("phase") == "Running", what="Running")
        # 300 MB bodies, three scrapes in a row: each is cut at the operator's limit.
        wait_for(lambda: rank0.served["big"] >= 3, timeout=30, what="three 300 MB scrapes")
        rss = peak_rss(proc.pid)
        assert rss < MEMORY_BOUND, f"operator peak RSS {rss / 2**20:.0f} MiB"
        # Infinite and NaN values: ignored, the rest of the scrape still counts.
        rank0.mode = (
            "kubetune_train_step +Inf\nkubetune_train_total_steps NaN\n"
            "kubetune_train_loss 1.25\nkubetune_train_epoch -Inf\n"
        )
        wait_for(lambda: status(cluster).get("progress", {}).get("loss") == 1.25,
                 what="the finite loss in status")  # fmt: skip
        served = rank0.served["text"]
        wait_for(lambda: rank0.served["text"] >= served + 3, what="the loop to keep scraping")
        # The loop is alive: a sane value afterwards reaches status.
        rank0.mode = "kubetune_train_step 42\nkubetune_train_total_steps 100\n"
        st = wait_for(lambda: (s := status(cluster)).get("progress", {}).get("step") == 42 and s,
                      what="step 42 in status")  # fmt: skip
        assert st["progress"]["totalSteps"] == 100 and st["phase"] == "Running"
        assert proc.poll() is None
        assert peak_rss(proc.pid) < MEMORY_BOUND
    log = (cluster.workdir / "operator.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "ignored non-finite or out-of-range metrics" in log
    assert "/metrics is over 4194304 bytes; ignored" in log
