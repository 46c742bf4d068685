"""NetworkPolicies: the chart's own (operator pods) and the operator's per-FineTuneJob one,
built with the peers the chart passes; both accepted by kubernetes-validate."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kubetune_api.loader import parse_job
from kubetune_operator import builders as b
from kubetune_operator import netpol
from tests.support.chart.helpers import (
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Manifests,
    find,
    one,
    run,
    scenario_id,
)

Render = Callable[..., Manifests]
FTJ = Path(__file__).resolve().parents[1] / "operator" / "ftj-basic.yaml"
PROMETHEUS = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def options(manifests: Manifests) -> argparse.Namespace:
    from kubetune_operator.__main__ import parse_args

    deployment = one(manifests, "Deployment")
    return parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def operator_pod_labels(manifests: Manifests) -> dict[str, str]:
    return one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]


def test_operator_pods_accept_metrics_from_prometheus_only(render: Render) -> None:
    manifests = render()
    policy = one(manifests, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= operator_pod_labels(manifests).items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]  # not the health port 8081
    test_pod = {
        "matchLabels": {
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "test",
        }
    }
    assert rule["from"] == [PROMETHEUS, {"podSelector": test_pod}]
    test_labels = next(m for m in manifests if m["kind"] == "Pod")["metadata"]["labels"]
    assert test_pod["matchLabels"].items() <= test_labels.items()  # `helm test` still reaches it


def test_the_operator_gets_the_metrics_peers(render: Render) -> None:
    manifests = render()
    opts = options(manifests)
    assert opts.network_policy
    operator, prometheus = opts.metrics_peer
    assert operator["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    assert operator["podSelector"]["matchLabels"].items() <= operator_pod_labels(manifests).items()
    assert prometheus == PROMETHEUS


def test_prometheus_selectors_are_configurable(render: Render) -> None:
    sets = (
        "networkPolicy.prometheus.namespaceSelector.matchLabels.team=monitoring",
        "networkPolicy.prometheus.podSelector=null",
    )
    manifests = render(None, *sets)
    want = {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}
    assert one(manifests, "NetworkPolicy")["spec"]["ingress"][0]["from"][0] == want
    assert options(manifests).metrics_peer[1] == want


def test_disabled_means_no_policy_flag_or_rbac(render: Render) -> None:
    manifests = render(None, "networkPolicy.enabled=false")
    assert not find(manifests, "NetworkPolicy")
    opts = options(manifests)
    assert not opts.network_policy and not opts.metrics_peer
    rules = [r for role in find(manifests, "ClusterRole") for r in role["rules"]]
    assert not [r for r in rules if "networkpolicies" in r["resources"]]


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_kubernetes_validate_accepts_both_policies(
    kubernetes_validate: str, render: Render, tmp_path: Path, values: Path | None
) -> None:
    manifests = render(values)
    job = parse_job(yaml.safe_load(FTJ.read_text()))
    owner = b.Owner(name="llama-lora", namespace="team-a", uid="0b5e2a3c-uid")
    per_job = netpol.build_network_policy(job, owner, tuple(options(manifests).metrics_peer))
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump_all([one(manifests, "NetworkPolicy"), per_job]))
    proc = run([kubernetes_validate, "--strict", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == 2, proc.stdout + proc.stderr
