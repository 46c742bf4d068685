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
    # The custom resource: kopf lists/watches/patches it (finalizer, annotations); we GET it
    # fresh in each reconcile, annotate the accepted spec and DELETE it after its TTL.
    (GROUP, PLURAL, ("get", "list", "watch", "patch", "delete")),
    # Status subresource: merge-patched by the follow loop (kopf patches it too).
    (GROUP, f"{PLURAL}/status", ("patch",)),
    # Children, created idempotently and deleted on retry/suspend/deletion.
    ("batch", "jobs", ("get", "list", "watch", "create", "delete")),
    ("", "services", ("list", "create", "delete")),
    ("", "configmaps", ("list", "create", "delete")),
    # Pods: watched (server-side label selector) and listed to classify failures and find
    # rank 0; deleted by label when a FineTuneJob is deleted.
    ("", "pods", ("list", "watch", "deletecollection")),
    # kopf.event/info/warn post core/v1 Events for every transition.
    ("", "events", ("create",)),
    # kopf peering (HA) in namespaced mode.
    ("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch")),
)

CLUSTER_RULES: Final[tuple[Rule, ...]] = (
    # kopf discovers resources through CRDs and namespaces (for namespace globs).
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("", "namespaces", ("get", "list", "watch")),
    # kopf peering in cluster-wide mode.
    ("kopf.dev", "clusterkopfpeerings", ("get", "list", "watch", "patch")),
)


def all_rules(clusterwide: bool = True) -> tuple[Rule, ...]:
    """Cluster-wide mode needs the namespaced rules in a ClusterRole as well."""
    return NAMESPACED_RULES + CLUSTER_RULES if clusterwide else NAMESPACED_RULES
