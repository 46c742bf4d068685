"""`kubetune serve-api`: the local queue over HTTP, its OpenAPI document, its token, and
the CLI/Client talking to it with `--backend http`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune_trainer.jobs import Client, UnknownJobError
from kubetune_trainer.jobs.http_api import create_app
from kubetune_trainer.jobs.local import LocalBackend
from kubetune_trainer.serving.server import ServerThread
from tests.support.net import free_port
from tests.support.trainer.local_jobs import cli, write_job

TOKEN = "s3cret-token"


@pytest.fixture
def api(home: Path) -> Iterator[str]:
    with ServerThread(create_app(LocalBackend(), token=TOKEN), free_port()) as url:
        yield url


def _status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_openapi_lists_the_routes_and_every_route_needs_the_token(api: str) -> None:
    with urllib.request.urlopen(f"{api}/openapi.json", timeout=10) as resp:
        doc = json.loads(resp.read())
    assert {"/jobs", "/jobs/{namespace}/{name}", "/jobs/{namespace}/{name}/logs",
            "/jobs/{namespace}/{name}/metrics", "/jobs/{namespace}/{name}/cancel"} <= set(
        doc["paths"])  # fmt: skip
    assert set(doc["paths"]["/jobs"]) == {"get", "post"}
    assert _status(f"{api}/jobs") == 401
    assert _status(f"{api}/jobs", "wrong") == 401
    assert _status(f"{api}/jobs/test/x/metrics") == 401  # refused before any lookup
    assert _status(f"{api}/jobs", TOKEN) == 200

    got = cli("jobs", "list", "--backend", "http", "--url", api, "-o", "json")
    assert got.returncode == 1 and "wrong token" in got.stderr and "Traceback" not in got.stderr
    got = cli("jobs", "list", "--backend", "http", "--url", api, "--token", TOKEN, "-o", "json")
    assert got.returncode == 0 and json.loads(got.stdout) == []
    with pytest.raises(UnknownJobError, match="no job test/nope"):
        Client("http", url=api, token=TOKEN).get("test/nope")


def test_serve_api_refuses_a_non_loopback_address_without_a_token(home: Path) -> None:
    got = cli("serve-api", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60)
    assert got.returncode == 2 and "--token" in got.stderr and "reachable from other" in got.stderr


@pytest.mark.slow
def test_submit_wait_logs_metrics_through_the_api(api: str, tmp_path: Path) -> None:
    client = Client("http", url=api, token=TOKEN)
    bad = write_job(tmp_path, "bad")
    bad.write_text(bad.read_text().replace("maxSteps: 4", "maxSteps: -1"))
    got = cli("submit", str(bad), "--backend", "http", "--url", api, "--token", TOKEN)
    assert got.returncode == 64 and "training.maxSteps" in got.stderr

    got = cli("submit", str(write_job(tmp_path, "remote")), "--backend", "http", "--url", api,
              "--token", TOKEN)  # fmt: skip
    assert got.returncode == 0 and got.stdout.strip() == "test/remote", got.stderr
    ref = client.get("test/remote")
    assert ref.backend == "local"  # served by the local queue behind the API
    final = client.wait("test/remote", timeout=240)
    assert final.phase == "Succeeded" and final.step == 4
    text = "".join(client.logs("test/remote", follow=True))
    assert "adapter: " in text
    metrics = client.metrics("test/remote")
    assert [r["step"] for r in metrics["rows"] if "loss" in r] == [1, 2, 3, 4]
    assert [j.id for j in client.list()] == ["test/remote"]
