"""The operator's allow-lists (--allowed-image, --allowed-service-account): a FineTuneJob is
a pod with its image and service account, so one outside the lists is Failed (Forbidden)
before any child exists. Through the real operator against the API emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import FTJ, EmulatorServer, run_operator, wait_for
from tests.support.kube.operator import NS, cond, load_ftj, operator_posts, phase_is


@pytest.fixture
def strict(cluster: EmulatorServer) -> Iterator[EmulatorServer]:
    config = OperatorConfig(
        reconcile_interval=0.5, metrics_port=None, image="registry.test/trainer:1",
        allowed_images=("registry.test/trainer:*",), allowed_service_accounts=("trainer",),
    )  # fmt: skip
    with run_operator(cluster, [NS], config):
        yield cluster


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"image": "evil.example/miner:1"}, "spec.resources.image 'evil.example/miner:1'"),
        ({"image": "registry.test/trainer-debug:1"}, "spec.resources.image"),
        (
            {"serviceAccountName": "cluster-admin"},
            "spec.resources.serviceAccountName 'cluster-admin'",
        ),
    ],
    ids=["foreign-image", "lookalike-image", "service-account"],
)
def test_job_outside_the_allow_lists_fails_before_any_child(strict, resources, field):
    cluster = strict
    cluster.create(FTJ, load_ftj(resources=resources))
    st = wait_for(lambda: phase_is(cluster, "Failed"), what="Failed")
    failed = cond(st, "Failed")
    assert failed["reason"] == "Forbidden"
    assert field in failed["message"] and "not allowed by the operator" in failed["message"]
    for plural in ("configmaps", "services", "jobs"):
        assert not operator_posts(cluster, plural), plural
    events = wait_for(  # kopf posts Events asynchronously
        lambda: [e for e in cluster.events(NS, "llama-lora") if e["reason"] == "Forbidden"]
    )
    assert events[0]["type"] == "Warning"


def test_allowed_image_and_service_account_run(strict):
    cluster = strict
    cluster.create(FTJ, load_ftj(resources={"image": "registry.test/trainer:2"}))
    job = wait_for(lambda: cluster.get("batch/v1/jobs", NS, "llama-lora-a1"), what="the Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.test/trainer:2"
    assert pod["serviceAccountName"] == "trainer"
