"""The chart's RBAC grants exactly what operator/kubetune_operator/rbac.py says the operator
uses: every (apiGroup, resource, verb) there is allowed, and nothing else is."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from kubetune_operator import rbac
from tests.support.chart.helpers import CHART, NAMESPACE, Manifests, find, one

Render = Callable[..., Manifests]
Triple = tuple[str, str, str]


def granted(rules: Iterable[dict]) -> set[Triple]:
    """Expand RBAC PolicyRules into (apiGroup, resource, verb) triples."""
    out: set[Triple] = set()
    for rule in rules:
        assert not rule.get("resourceNames"), "the operator works on objects it creates"
        assert not rule.get("nonResourceURLs"), "no non-resource URLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def needed(rules: Iterable[rbac.Rule]) -> set[Triple]:
    return {(g, r, v) for g, r, verbs in rules for v in verbs}


def rbac_rules(clusterwide: bool, kind: str) -> tuple[rbac.Rule, ...]:
    return rbac.rules(clusterwide)[kind]


@pytest.mark.parametrize("clusterwide", [True, False], ids=["cluster-wide", "namespaced"])
def test_rbac_py_itself_is_least_privilege(clusterwide: bool) -> None:
    # (That every rule is also used is checked against real traffic in
    # tests/operator/test_operator_process.py.)
    triples = needed(r for kind in rbac.rules(clusterwide).values() for r in kind)
    assert triples, "rbac.py lists no rules"
    assert not {t for t in triples if "*" in t}, "no wildcards"
    # Secrets: create only (the job's URL-credentials Secret); the operator never reads one.
    assert {v for _, r, v in triples if r == "secrets"} == {"create"}, "never read Secrets"
    # Pods are read-only: they go with their Job (garbage collector).
    assert {v for _, r, v in triples if r == "pods"} == {"list", "watch"}
    # Children set blockOwnerDeletion: OwnerReferencesPermissionEnforcement checks this.
    assert ("kubetune.io", "finetunejobs/finalizers", "update") in triples
    # No kopf peering (HA is a Lease); only namespaced kopf lists namespaces.
    assert not {t for t in triples if t[0] == "kopf.dev"}
    assert (("", "namespaces", "watch") in triples) is not clusterwide
    # Leases only in the leader-election Role (the operator's namespace), never cluster-wide.
    lease_rules = {
        k for k, rules in rbac.rules(clusterwide).items() for r in rules if r[1] == "leases"
    }
    assert lease_rules == {"LeaderElectionRole"}


def test_cluster_wide_role_matches_rbac_py(render: Render) -> None:
    manifests = render()
    role = one(manifests, "ClusterRole")
    assert granted(role["rules"]) == needed(rbac_rules(True, "ClusterRole"))
    assert not rbac_rules(True, "Role") and not watch_roles(manifests)
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }


@pytest.mark.parametrize("values", [CHART / "ci/namespaced-values.yaml", None])
def test_namespaced_roles_match_rbac_py(render: Render, values: Path | None) -> None:
    manifests = render(values, "watch.clusterWide=false")
    roles = watch_roles(manifests)
    assert roles
    for role in roles:
        assert granted(role["rules"]) == needed(rbac_rules(False, "Role"))
    # Cluster-wide, namespaced mode grants only kopf's read-only discovery.
    cluster = one(manifests, "ClusterRole")
    assert granted(cluster["rules"]) == needed(rbac_rules(False, "ClusterRole"))
    assert {verb for _, _, verb in granted(cluster["rules"])} == {"list", "watch"}
    assert one(manifests, "ClusterRoleBinding")["roleRef"]["name"] == cluster["metadata"]["name"]


def test_no_rbac_objects_when_disabled(render: Render) -> None:
    kinds = {m["kind"] for m in render(None, "rbac.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def watch_roles(manifests: Manifests) -> list[dict]:
    return [
        m for m in find(manifests, "Role") if not m["metadata"]["name"].endswith("-leader-election")
    ]


@pytest.mark.parametrize("values", [None, CHART / "ci/namespaced-values.yaml"])
def test_leader_election_role_matches_rbac_py(render: Render, values: Path | None) -> None:
    manifests = render(values)
    (role,) = [m for m in find(manifests, "Role") if m not in watch_roles(manifests)]
    assert role["metadata"]["namespace"] == NAMESPACE  # where the operator puts its Lease
    clusterwide = values is None
    assert granted(role["rules"]) == needed(rbac_rules(clusterwide, "LeaderElectionRole"))
    (binding,) = find(manifests, "RoleBinding", role["metadata"]["name"])
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    # Standalone (one replica): no Lease, so no Role for it.
    standalone = render(values, "leaderElection.enabled=false")
    assert not [m for m in find(standalone, "Role") if m not in watch_roles(standalone)]


def test_networkpolicies_are_granted_only_when_the_operator_makes_them(render: Render) -> None:
    rules = {("networking.k8s.io", "networkpolicies", verb) for verb in ("get", "create")}
    assert rules <= needed(rbac_rules(True, "ClusterRole"))  # rbac.py: the default (enabled)
    off = render(None, "networkPolicy.enabled=false")
    expected = needed(rbac_rules(True, "ClusterRole")) - rules
    assert granted(one(off, "ClusterRole")["rules"]) == expected
