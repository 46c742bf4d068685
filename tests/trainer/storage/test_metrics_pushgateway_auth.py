"""A Pushgateway behind basic auth (a real one, started with a web config): the password a
spec writes inside metrics.pushgatewayUrl (or the operator's Secret puts in the
environment) is sent as basic auth, and neither the URL the sink keeps nor its warnings
carry it."""

from __future__ import annotations

import base64
import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubetune_trainer.reporting.prometheus import PrometheusSink, pushgateway_target
from kubetune_trainer.reporting.sinks import LogRow, RunInfo
from tests.support.net import free_port
from tests.support.servers.servers import HOST, Process, wait_until

pytestmark = pytest.mark.services
USER, PASSWORD = "bob", "kt-pg-canary-5d1e"


@contextmanager
def guarded_pushgateway(workdir: Path) -> Iterator[str]:
    """prometheus-pushgateway requiring USER/PASSWORD (bcrypt in its web config)."""
    import bcrypt

    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway is missing: run `bash scripts/system-deps.sh`")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = workdir / "web.yml"
    config.write_text(f"basic_auth_users:\n  {USER}: {hashed}\n")
    port = free_port()
    args = [binary, f"--web.listen-address={HOST}:{port}", f"--web.config.file={config}",
            f"--persistence.file={workdir / 'pushgateway.data'}"]  # fmt: skip
    proc = Process(args, workdir / "pushgw.log")
    proc.start()
    url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: proc.check_alive() and metrics(url), 30, f"pushgateway {url}")
        yield url
    finally:
        proc.stop()


def metrics(url: str) -> str:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def push(url: str | None, auth: tuple[str, str] | None) -> None:
    sink = PrometheusSink(0, addr="127.0.0.1", pushgateway_url=url, pushgateway_auth=auth)
    try:
        sink.on_start(RunInfo("team-a", "tiny", 1, "s3://b/runs/team-a/tiny"), {})
        sink.on_log(LogRow(step=7, total_steps=10, epoch=0.5, loss=1.5))
        sink.push()
    finally:
        sink.close()


def test_password_in_the_url_becomes_basic_auth(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kubetune_trainer.reporting.prometheus")
    with guarded_pushgateway(tmp_path) as gw:
        host = gw.removeprefix("http://")
        url, auth = pushgateway_target(f"http://{USER}:{PASSWORD}@{host}")
        assert url == gw and auth == (USER, PASSWORD)
        push(url, auth)
        labels = 'finetunejob="tiny",instance="",job="kubetune",namespace="team-a"'
        series = f"kubetune_train_step{{{labels}}}"
        assert f"{series} 7" in metrics(gw)
        # Without the credentials the Pushgateway refuses (so the push above used them).
        push(gw, None)
        assert "push to the Pushgateway" in caplog.text and "401" in caplog.text
    assert PASSWORD not in caplog.text


def test_credentials_from_the_operators_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBETUNE_PUSHGATEWAY_USERNAME", USER)
    monkeypatch.setenv("KUBETUNE_PUSHGATEWAY_PASSWORD", PASSWORD)
    with guarded_pushgateway(tmp_path) as gw:
        url, auth = pushgateway_target(gw)  # the ConfigMap's URL: no userinfo
        assert (url, auth) == (gw, (USER, PASSWORD))
        push(url, auth)
        assert 'job="tiny"' in metrics(gw)


def test_no_url_no_target():
    assert pushgateway_target(None) == (None, None)
    assert pushgateway_target("http://pg:9091") == ("http://pg:9091", None)
