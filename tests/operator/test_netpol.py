"""The per-job NetworkPolicy (netpol.py): exact manifest, and what its selectors admit."""

from __future__ import annotations

import pytest

from kubetune_api.loader import parse_job
from kubetune_operator import builders as b
from kubetune_operator import netpol
from tests.support.kube.operator import OWNER, load_ftj

OPERATOR = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubetune"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kubetune"}},
}
PROMETHEUS = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def test_exact_manifest():
    job = parse_job(load_ftj(metrics={"port": 9500}, distributed={"masterPort": 29600}))
    policy = netpol.build_network_policy(job, OWNER, (OPERATOR, PROMETHEUS))
    pods = {
        "matchLabels": {
            "kubetune.io/job": "llama-lora",
            "app.kubernetes.io/managed-by": b.MANAGED_BY,
        }
    }
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "llama-lora-net",
            "namespace": "team-a",
            "labels": b.labels(OWNER, component="network"),
            "ownerReferences": [b.owner_reference(OWNER)],
        },
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                # Same job: every port (rendezvous 29600, NCCL/gloo's ephemeral ones).
                {"from": [{"podSelector": pods}]},
                # The metrics port only from the operator and Prometheus.
                {"from": [OPERATOR, PROMETHEUS], "ports": [{"port": 9500, "protocol": "TCP"}]},
            ],
        },
    }


def test_trainer_pods_are_selected_and_other_jobs_are_not():
    job = parse_job(load_ftj())
    spec = netpol.build_network_policy(job, OWNER, ())["spec"]
    selector = spec["podSelector"]["matchLabels"]
    trainer = b.build_job(job, OWNER, 2, deadline_remaining=None)["spec"]["template"]
    assert selector.items() <= trainer["metadata"]["labels"].items()  # every attempt's pods
    other = b.build_job(job, b.Owner("other", "team-a", "uid-2"), 1, deadline_remaining=None)
    assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
    # No metrics peers: the metrics port is closed to everyone but the job's own pods.
    assert spec["ingress"] == [{"from": [{"podSelector": spec["podSelector"]}]}]


@pytest.mark.parametrize(
    ("peer", "problem"),
    [
        ({}, "non-empty"),
        ([], "non-empty"),
        ({"podSelectr": {}}, "unknown key(s) ['podSelectr']"),
        ({"podSelector": "app=prometheus"}, "is an object"),
    ],
)
def test_metrics_peers_are_checked(peer, problem, capsys):
    import json

    from kubetune_operator.__main__ import parse_args

    assert problem in (netpol.peer_problem(peer) or "")
    with pytest.raises(SystemExit):
        parse_args(["-A", "--standalone", "--metrics-peer", json.dumps(peer)])
    assert "--metrics-peer" in capsys.readouterr().err
    assert netpol.peer_problem(PROMETHEUS) is None


def test_the_operator_creates_it_before_any_pod(cluster):
    from kubetune_operator.config import OperatorConfig
    from tests.support.kube.cluster import FTJ, run_operator, wait_for

    config = OperatorConfig(
        reconcile_interval=0.5, metrics_port=None, network_policy=True, metrics_peers=(PROMETHEUS,)
    )
    with run_operator(cluster, ["team-a"], config):
        cluster.create(FTJ, load_ftj())
        wait_for(lambda: cluster.get("batch/v1/jobs", "team-a", "llama-lora-a1"), what="the Job")
    policy = cluster.get("networking.k8s.io/v1/networkpolicies", "team-a", "llama-lora-net")
    assert policy is not None
    assert policy["spec"]["ingress"][1]["from"] == [PROMETHEUS]
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "FineTuneJob"  # goes with it
    posts = [r.url.path.rsplit("/", 1)[-1] for r in cluster.requests() if r.method.value == "POST"]
    assert posts.index("networkpolicies") < posts.index("jobs")
