"""HA in the chart: every rendering that runs several operator replicas elects one leader
through a Lease, and a configuration where several replicas would all act is refused.
(Two real operator processes started with the rendered arguments:
tests/operator/test_operator_ha.py::test_two_replicas_from_the_chart_one_acts_and_fails_over.)"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.chart.helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Manifests,
    one,
    run,
    scenario_id,
)

Render = Callable[..., Manifests]


def options(manifests: Manifests) -> argparse.Namespace:
    from kubetune_operator.__main__ import parse_args

    deployment = one(manifests, "Deployment")
    return parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_every_scenario_elects_a_leader(render: Render, values: Path | None, replicas: int) -> None:
    manifests = render(values, f"replicaCount={replicas}")
    assert one(manifests, "Deployment")["spec"]["replicas"] == replicas
    opts = options(manifests)
    assert not opts.standalone
    lease = opts.lease
    assert lease.namespace == NAMESPACE  # the release namespace, where its Role is
    assert (lease.duration, lease.renew_deadline, lease.retry_period) == (15, 10, 2)
    assert not lease.problems()


def test_lease_values_reach_the_operator(render: Render) -> None:
    sets = (
        "leaderElection.leaseName=ml-operator-leader",
        "leaderElection.leaseDurationSeconds=30",
        "leaderElection.renewDeadlineSeconds=20",
        "leaderElection.retryPeriodSeconds=5",
    )
    lease = options(render(None, *sets)).lease
    assert (lease.name, lease.duration, lease.renew_deadline, lease.retry_period) == (
        "ml-operator-leader", 30, 20, 5,
    )  # fmt: skip
    # One replica without leader election: --standalone, the only way kopf runs unelected.
    assert options(render(None, "leaderElection.enabled=false")).standalone


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["replicaCount=2", "leaderElection.enabled=false"], "replicaCount 2 needs leaderElection"),
        (
            ["replicaCount=3", "operator.extraArgs={--standalone}"],
            "--standalone in operator.extraArgs",
        ),
        (["leaderElection.renewDeadlineSeconds=15"], "leaseDurationSeconds > renewDeadlineSeconds"),
        (["leaderElection.retryPeriodSeconds=10"], "renewDeadlineSeconds > retryPeriodSeconds"),
    ],
    ids=["no-election", "standalone-arg", "renew-not-shorter", "retry-not-shorter"],
)
def test_chart_refuses_ha_that_cannot_work(helm: str, sets: list[str], message: str) -> None:
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        cmd += ["--set", s]
    proc = run(cmd, check=False)
    assert proc.returncode != 0, f"rendered: {sets}"
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
