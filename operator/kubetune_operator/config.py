"""Operator options (from the command line or a test), carried in kopf's operator memo."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from kubetune_api.spec import FineTuneJob

from . import DEFAULT_IMAGE


@dataclass(frozen=True)
class Policy:
    """What a FineTuneJob may run as. Creating one is creating pods with its image and
    service account, so a cluster admin can narrow both (empty: anything is allowed)."""

    default_image: str = DEFAULT_IMAGE
    allowed_images: tuple[str, ...] = ()  # fnmatch patterns, e.g. "registry.example/kubetune/*"
    allowed_service_accounts: tuple[str, ...] = ()  # exact names

    def denies(self, job: FineTuneJob) -> str | None:
        """Why the operator refuses to run this job, or None."""
        res = job.spec.resources
        image = res.image or self.default_image
        if self.allowed_images and not any(
            fnmatch.fnmatchcase(image, p) for p in self.allowed_images
        ):
            return (
                f"spec.resources.image {image!r} is not allowed by the operator "
                f"(--allowed-image: {', '.join(self.allowed_images)}); use an allowed image "
                "or ask the cluster admin to allow it"
            )
        sa = res.service_account_name
        if sa and self.allowed_service_accounts and sa not in self.allowed_service_accounts:
            return (
                f"spec.resources.serviceAccountName {sa!r} is not allowed by the operator "
                f"(--allowed-service-account: {', '.join(self.allowed_service_accounts)}); "
                "use an allowed one or leave it out (the namespace's default)"
            )
        return None


@dataclass(frozen=True)
class OperatorConfig:
    # How often a running FineTuneJob is looked at without any event (progress scraping,
    # deadlines); Job/Pod events and spec changes wake its loop at once.
    reconcile_interval: float = 10.0
    # A running job's progress is written to its status at most this often (seconds); a
    # phase or condition change is written at once (pacing.py).
    status_interval: float = 30.0
    # Client-side cap on Kubernetes API requests (like controller-runtime's QPS/burst):
    # a token bucket of `api_burst` tokens refilled at `api_qps` per second.
    api_qps: float = 50.0
    api_burst: int = 100
    image: str = DEFAULT_IMAGE
    metrics_port: int | None = 8080  # operator /metrics; None disables it
    metrics_addr: str = "0.0.0.0"
    # A NetworkPolicy per FineTuneJob (netpol.py), and who may reach the trainers' metrics
    # port besides the job's own pods (NetworkPolicyPeer objects: the operator, Prometheus).
    network_policy: bool = False
    metrics_peers: tuple[dict[str, Any], ...] = ()
    # Peering (HA): several replicas, one active; the chart creates the KopfPeering object.
    peering_name: str = "kubetune"
    # Seconds before a Kubernetes API request is given up (then retried with backoff).
    api_timeout: float = 30.0
    # S3 endpoints the operator may send cleanup requests to (its own credentials go with
    # them); a job naming any other spec.output.s3Endpoint keeps its artifacts. AWS S3
    # itself (no s3Endpoint) is always allowed.
    s3_endpoint_allow: tuple[str, ...] = ()
    # Local folders (volumes the operator mounts too) whose models' config.json the memory
    # preflight may read before creating a Job (memcheck.py); s3:// bases need no root.
    model_config_roots: tuple[str, ...] = ()
    allowed_images: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()

    @property
    def policy(self) -> Policy:
        return Policy(self.image, self.allowed_images, self.allowed_service_accounts)
