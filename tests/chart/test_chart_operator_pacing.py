"""The chart passes the operator's pacing and API flow-control flags (--reconcile-interval,
--status-interval, --qps, --burst, --api-timeout) from values, read back by the operator's
own parser; their defaults are the operator's, and the schema refuses values it would."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubetune_operator.__main__ import parse_args
from tests.support.chart.helpers import CHART, RELEASE, Manifests, one, operator_options, run

Render = Callable[..., Manifests]
FLAGS = {  # values.yaml key under `operator` -> the parsed option
    "reconcileIntervalSeconds": "reconcile_interval",
    "statusIntervalSeconds": "status_interval",
    "apiQPS": "qps",
    "apiBurst": "burst",
    "apiTimeoutSeconds": "api_timeout",
}


def test_defaults_are_the_operators_own(render: Render) -> None:
    opts = vars(operator_options(one(render(), "Deployment")))
    own = vars(parse_args(["--all-namespaces", "--standalone"]))
    assert {o: opts[o] for o in FLAGS.values()} == {o: own[o] for o in FLAGS.values()}


def test_values_reach_the_operator(render: Render) -> None:
    sets = (
        "operator.reconcileIntervalSeconds=5",
        "operator.statusIntervalSeconds=60",
        "operator.apiQPS=200",
        "operator.apiBurst=400",
        "operator.apiTimeoutSeconds=15",
    )
    opts = operator_options(one(render(None, *sets), "Deployment"))
    got = {o: getattr(opts, o) for o in FLAGS.values()}
    assert got == {"reconcile_interval": 5, "status_interval": 60, "qps": 200, "burst": 400,
                   "api_timeout": 15}  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        "operator.apiQPS=0",
        "operator.apiBurst=0",
        "operator.apiBurst=1.5",
        "operator.statusIntervalSeconds=-1",
        "operator.reconcileIntervalSeconds=0",
        "operator.apiTimeoutSeconds=soon",
    ],
)
def test_schema_refuses_what_the_operator_would(helm: str, bad: str) -> None:
    proc = run([helm, "template", RELEASE, str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower(), proc.stderr
