"""Operator options (from the command line or a test), carried in kopf's operator memo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import DEFAULT_IMAGE


@dataclass(frozen=True)
class OperatorConfig:
    # How often a running FineTuneJob is looked at without any event (progress scraping,
    # deadlines); Job/Pod events and spec changes wake its loop at once.
    reconcile_interval: float = 10.0
    image: str = DEFAULT_IMAGE
    metrics_port: int | None = 8080  # operator /metrics; None disables it
    metrics_addr: str = "0.0.0.0"
    # A NetworkPolicy per FineTuneJob (netpol.py), and who may reach the trainers' metrics
    # port besides the job's own pods (NetworkPolicyPeer objects: the operator, Prometheus).
    network_policy: bool = False
    metrics_peers: tuple[dict[str, Any], ...] = ()
    # Peering (HA): several replicas, one active; the chart creates the KopfPeering object.
    peering_name: str = "kubetune"
