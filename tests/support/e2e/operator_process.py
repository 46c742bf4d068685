"""The real operator as its own process: `python -m kubetune_operator`, logged in through the
emulator's kubeconfig, exactly as the chart's Deployment runs it (only the flags differ)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# The operator's own S3 identity (it deletes artifacts for cleanupPolicy: delete with its
# own credentials, never the user's Secret). moto accepts any key.
OPERATOR_AWS = {
    "AWS_ACCESS_KEY_ID": "operator-access-key",
    "AWS_SECRET_ACCESS_KEY": "operator-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class OperatorProcess:
    kubeconfig: Path
    namespace: str
    log_path: Path
    metrics_port: int
    reconcile_interval: float = 1.0
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)

    def start(self, timeout: float = 120) -> None:
        """Start and wait until its /metrics answers (kopf is up and our startup ran)."""
        args = [
            sys.executable, "-m", "kubetune_operator",
            "--namespace", self.namespace, "--standalone",
            "--metrics-port", str(self.metrics_port), "--bind", "127.0.0.1",
            "--liveness-port", "0",
            "--reconcile-interval", str(self.reconcile_interval),
            # Short runs: progress reaches status every look, not every 30 s.
            "--status-interval", str(self.reconcile_interval),
            *self.extra_args,
        ]  # fmt: skip
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.log_path.parent),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": str(self.kubeconfig),
            # The sources under test first, as this process has them (the shared .venv may be
            # installed from another checkout).
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
            **OPERATOR_AWS,
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            log.write(f"--- operator start #{self.starts + 1} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.popen.returncode}):\n{self.tail()}")
            if self.metrics_text() is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the operator's /metrics did not answer in {timeout} s:\n{self.tail()}")

    def metrics_text(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (kopf runs its cleanup, the scheduler stops, it exits), SIGKILL to its group
        if it lingers."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.popen = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])
