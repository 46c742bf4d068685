"""End-to-end fixtures: one API emulator, one moto S3 server (with the sample data uploaded)
and one canary per session; per test a namespace with its own Secret, kubelet stand-in and
operator process. MLflow and Prometheus come from tests/fixtures, started where a test
asks for them.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (ROOT, ROOT / "tests" / "operator"):  # tests.fixtures; the operator's emulator
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from e2e_kubelet import Kubelet, free_port  # noqa: E402
from e2e_operator import OperatorProcess  # noqa: E402
from e2e_world import World  # noqa: E402
from kube_cluster import EmulatorServer  # noqa: E402

from tests.fixtures.plugin import mlflow_server  # noqa: E402, F401 - a fixture, found by name
from tests.fixtures.servers import S3Server, s3_server  # noqa: E402

BUCKET = "kubetune-e2e"
FINANCE = ROOT / "examples" / "data" / "finance_qa" / "train.jsonl"
RATED = ROOT / "examples" / "data" / "preference" / "rated.jsonl"


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path_factory.mktemp("emulator")) as cluster:
        cluster.apply_crd()
        yield cluster


@pytest.fixture(scope="session")
def e2e_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto in server mode with the bucket and the sample data sets under data/."""
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(FINANCE), BUCKET, "data/finance_qa.jsonl")
        client.upload_file(str(RATED), BUCKET, "data/rated.jsonl")
        yield server


@pytest.fixture(scope="session")
def canary() -> str:
    """A value no code could produce by chance: the S3 secret key of every test's Secret."""
    return "kt-canary-" + secrets.token_hex(12)


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    e2e_cluster: EmulatorServer,
    e2e_s3: S3Server,
    canary: str,
    tmp_path: Path,
) -> Iterator[World]:
    """A namespace named after the test, with its Secret, kubelet and operator running."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))
    namespace = ("e2e-" + slug)[:40].strip("-")
    e2e_cluster.create_namespace(namespace)
    operator = OperatorProcess(
        kubeconfig=e2e_cluster.kubeconfig,
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        metrics_port=free_port(),
    )
    with Kubelet(e2e_cluster.url, namespace, tmp_path / "node") as kubelet:
        w = World(
            cluster=e2e_cluster,
            namespace=namespace,
            workdir=tmp_path,
            s3=e2e_s3,
            bucket=BUCKET,
            canary=canary,
            kubelet=kubelet,
            operator=operator,
            values={"BUCKET": BUCKET, "S3_ENDPOINT": e2e_s3.endpoint, "CLEANUP": "retain"},
        )
        w.create_secret()
        operator.start()
        try:
            yield w
        finally:
            operator.stop()
