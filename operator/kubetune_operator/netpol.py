"""Pure: the NetworkPolicy of one FineTuneJob's trainer pods (an owned child, like its ConfigMap).

Why per job, built by the operator, and not one policy per namespace in the chart: a
NetworkPolicy cannot say "from pods with the same label value as the target", and NCCL/gloo
connect between ranks on ephemeral ports. So each FineTuneJob gets its own policy selecting
its pods (label `kubetune.io/job=<name>`):

- from pods of the same FineTuneJob (same namespace, same job label): every port — the
  torchrun/c10d rendezvous (`distributed.masterPort`; its store unpickles what it reads) and
  the NCCL/gloo connections between ranks;
- to the metrics port (`metrics.port`) only from the configured peers (the operator's pods,
  which read rank 0's progress, and Prometheus);
- nothing else. Egress is not restricted (S3, the model hub, MLflow). Kubelet probes from the
  node are always allowed by NetworkPolicy implementations.
"""

from __future__ import annotations

import copy
from typing import Any

from kubetune_api import constants as c
from kubetune_api.spec import FineTuneJob

from .builders import MANAGED_BY, Owner, labels, owner_reference

# The keys of a networking.k8s.io/v1 NetworkPolicyPeer.
PEER_KEYS = frozenset({"podSelector", "namespaceSelector", "ipBlock"})


def network_policy_name(name: str) -> str:
    return f"{name}-net"


def job_pods(owner: Owner) -> dict[str, Any]:
    """Every pod of this FineTuneJob (any attempt) that the operator made."""
    return {"matchLabels": {c.LABEL_JOB: owner.name, c.LABEL_MANAGED_BY: MANAGED_BY}}


def peer_problem(peer: Any) -> str | None:
    """Why `peer` is not a NetworkPolicyPeer we accept (None if it is)."""
    if not isinstance(peer, dict) or not peer:
        return "a peer is a non-empty object"
    unknown = sorted(set(peer) - PEER_KEYS)
    if unknown:
        return f"unknown key(s) {unknown}; a peer has {sorted(PEER_KEYS)}"
    if any(not isinstance(v, dict) for v in peer.values()):
        return "each selector or ipBlock is an object"
    return None


def build_network_policy(
    job: FineTuneJob, owner: Owner, metrics_peers: tuple[dict[str, Any], ...]
) -> dict[str, Any]:
    """Ingress to the job's trainer pods: all ports from the same job, the metrics port from
    `metrics_peers` (empty: from nobody)."""
    ingress: list[dict[str, Any]] = [{"from": [{"podSelector": job_pods(owner)}]}]
    if metrics_peers:
        ingress.append(
            {
                "from": [copy.deepcopy(p) for p in metrics_peers],
                "ports": [{"port": job.spec.metrics.port, "protocol": "TCP"}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": network_policy_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels(owner, component="network"),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "podSelector": job_pods(owner),
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
