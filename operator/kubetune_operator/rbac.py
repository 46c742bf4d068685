"""The exact API access the operator uses: (apiGroup, resource, verbs).

The chart's RBAC is tested against this list, so keep it in step with the code:
`k8s.py` (our calls) and kopf itself (watching, patching, events, peering).
No access to Secrets: the trainer pods get credentials by reference (envFrom
secretRef), and S3 cleanup on deletion uses the operator's own credentials.
"""

from __future__ import annotations

from typing import Final

from kubetune_api.constants import GROUP, PLURAL

Rule = tuple[str, str, tuple[str, ...]]

NAMESPACED_RULES: Final[tuple[Rule, ...]] = (
    # The custom resource: kopf lists/watches/patches it (finalizer, deletion progress); we
    # GET it fresh in each reconcile and DELETE it after its TTL.
    (GROUP, PLURAL, ("get", "list", "watch", "patch", "delete")),
    # Status subresource: merge-patched by the follow loop (kopf patches it too).
    (GROUP, f"{PLURAL}/status", ("patch",)),
    # Children, created idempotently and deleted on retry/suspend/deletion.
    ("batch", "jobs", ("get", "list", "watch", "create", "delete")),
    ("", "services", ("list", "create", "delete")),
    # The ConfigMap also carries the accepted spec (read back with GET).
    ("", "configmaps", ("get", "list", "create", "delete")),
    # Pods: watched (server-side label selector) and listed to classify failures and find
    # rank 0; deleted by label when a FineTuneJob is deleted.
    ("", "pods", ("list", "watch", "deletecollection")),
    # kopf.event/info/warn post core/v1 Events for every transition.
    ("", "events", ("create",)),
    # kopf peering (HA) in namespaced mode.
    ("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch")),
)

CLUSTER_RULES: Final[tuple[Rule, ...]] = (
    # kopf watches CRDs (resource discovery) and namespaces (which of the namespaces it
    # was given exist) even when started with plain namespace names: always cluster-wide.
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("", "namespaces", ("get", "list", "watch")),
)

CLUSTERWIDE_PEERING: Final[Rule] = (
    "kopf.dev",
    "clusterkopfpeerings",
    ("get", "list", "watch", "patch"),
)


def rules(clusterwide: bool) -> dict[str, tuple[Rule, ...]]:
    """What goes in the ClusterRole and in the (per watched namespace) Role.

    `--all-namespaces`: everything in one ClusterRole (with cluster-wide peering).
    `--namespace X`: NAMESPACED_RULES in a Role in each X; CLUSTER_RULES in a ClusterRole.
    """
    if clusterwide:
        return {"ClusterRole": (*NAMESPACED_RULES, *CLUSTER_RULES, CLUSTERWIDE_PEERING), "Role": ()}
    return {"ClusterRole": CLUSTER_RULES, "Role": NAMESPACED_RULES}


def allows(group: str, resource: str, verb: str, clusterwide: bool = True) -> bool:
    return any(
        g == group and r == resource and verb in verbs
        for kind in rules(clusterwide).values()
        for g, r, verbs in kind
    )
