"""The exact API access the operator uses: (apiGroup, resource, verbs).

The chart's RBAC is tested against this list, so keep it in step with the code:
`k8s.py` (our calls), `leader.py` (the Lease) and kopf itself (watching, patching, events).
tests/operator/test_operator_process.py replays a whole lifecycle in both modes and
checks both directions: every request is allowed, and every rule here is used.
Secrets: create only, never read. The trainer pods get the user's credentials by
reference (envFrom secretRef); the one Secret the operator writes holds what a spec's
URL carried (user:password@ in tracking.mlflowUri / metrics.pushgatewayUrl), so it is
kept out of the ConfigMap and logs. S3 cleanup on deletion uses the operator's own
credentials.
Pods are read-only: they go with their Job (garbage collector).
"""

from __future__ import annotations

from typing import Final

from kubetune_api.constants import GROUP, PLURAL

Rule = tuple[str, str, tuple[str, ...]]

# What the operator does inside each namespace it serves (both modes).
JOB_RULES: Final[tuple[Rule, ...]] = (
    # The custom resource: kopf lists/watches/patches it (finalizer, deletion progress); we
    # GET it fresh in each reconcile and DELETE it after its TTL.
    (GROUP, PLURAL, ("get", "list", "watch", "patch", "delete")),
    # Status subresource: merge-patched by the job's reconcile pass.
    (GROUP, f"{PLURAL}/status", ("patch",)),
    # Children carry ownerReferences with blockOwnerDeletion: true. With the admission
    # plugin OwnerReferencesPermissionEnforcement (on in OpenShift and many hardened
    # clusters) creating them needs `update` on the owner's finalizers subresource.
    (GROUP, f"{PLURAL}/finalizers", ("update",)),
    # Children, created idempotently and deleted on retry/suspend/deletion; an existing
    # one is read (get) first and used only if its ownerReferences name this FineTuneJob.
    ("batch", "jobs", ("get", "list", "watch", "create", "delete")),
    ("", "services", ("get", "list", "create", "delete")),
    # The ConfigMap also carries the accepted spec (read back with GET).
    ("", "configmaps", ("get", "list", "create", "delete")),
    # The job's own Secret with the credentials taken out of its URLs: created only (no
    # get/list: tenants' Secrets stay unreadable); it goes with the job (garbage collector).
    ("", "secrets", ("create",)),
    # Pods, read-only: watched (server-side label selector) and listed to classify
    # failures, find rank 0 and wait on deletion until they are gone.
    ("", "pods", ("list", "watch")),
    # kopf.event/info/warn post core/v1 Events for every transition.
    ("", "events", ("create",)),
    # The per-job NetworkPolicy (--network-policy), created once; it goes with its owner.
    ("networking.k8s.io", "networkpolicies", ("get", "create")),
)

# Namespaced mode's Role in each served namespace.
NAMESPACED_RULES: Final[tuple[Rule, ...]] = JOB_RULES

# HA (leader.py): the leader Lease in the operator's own namespace, in a Role there (both
# modes): read, created once, renewed and released by PUT. No delete, no other Leases' list.
LEADER_ELECTION: Final[Rule] = ("coordination.k8s.io", "leases", ("get", "create", "update"))

# kopf watches CRDs (resource discovery) in both modes, across the cluster.
CRD_DISCOVERY: Final[Rule] = (
    "apiextensions.k8s.io",
    "customresourcedefinitions",
    ("list", "watch"),
)
# Serving a list of namespaces, kopf also watches namespaces (which of those it was given
# exist), even plain names; a cluster-wide operator never does.
NAMESPACE_DISCOVERY: Final[Rule] = ("", "namespaces", ("list", "watch"))
# Namespaced mode's ClusterRole: read-only discovery.
CLUSTER_RULES: Final[tuple[Rule, ...]] = (CRD_DISCOVERY, NAMESPACE_DISCOVERY)


def rules(clusterwide: bool) -> dict[str, tuple[Rule, ...]]:
    """What goes in the ClusterRole, in the (per watched namespace) Role, and in the
    leader-election Role (the operator's own namespace).

    `--all-namespaces`: one ClusterRole (the jobs' rules and CRD discovery).
    `--namespace X`: NAMESPACED_RULES in a Role in each X; CLUSTER_RULES in a ClusterRole.
    """
    lease = {"LeaderElectionRole": (LEADER_ELECTION,)}
    if clusterwide:
        return {"ClusterRole": (*JOB_RULES, CRD_DISCOVERY), "Role": (), **lease}
    return {"ClusterRole": CLUSTER_RULES, "Role": NAMESPACED_RULES, **lease}


def allows(
    group: str, resource: str, verb: str, clusterwide: bool = True, namespaced: bool = True
) -> bool:
    """Whether a request is granted; `namespaced`: it names a namespace (a Role can grant
    it), else it is cluster-scoped or across all namespaces (only the ClusterRole can)."""
    kinds = ("ClusterRole", "Role", "LeaderElectionRole") if namespaced else ("ClusterRole",)
    return any(
        g == group and r == resource and verb in verbs
        for kind in kinds
        for g, r, verbs in rules(clusterwide)[kind]
    )
