"""Operator options (from the command line or a test), carried in kopf's operator memo."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubetune_api.spec import FineTuneJob
from kubetune_api.trainer_defaults import TrainerDefaults

from . import DEFAULT_IMAGE


def _endpoint_key(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def endpoint_allowed(endpoint: str | None, allow: tuple[str, ...]) -> bool:
    """--s3-endpoint-allow, for every S3 request the operator makes (cleanup, the memory
    preflight): AWS S3 itself (no endpoint) always; any other endpoint only if listed
    (scheme, host, port and path compared exactly, so http:// does not allow https:// or
    another port)."""
    if not endpoint:
        return True
    return _endpoint_key(endpoint) in {_endpoint_key(a) for a in allow}


@dataclass(frozen=True)
class Policy:
    """What a FineTuneJob may run as. Creating one is creating pods with its image and
    service account, so a cluster admin can narrow both (empty: anything is allowed)."""

    default_image: str = DEFAULT_IMAGE
    allowed_images: tuple[str, ...] = ()  # fnmatch patterns, e.g. "registry.example/kubetune/*"
    allowed_service_accounts: tuple[str, ...] = ()  # exact names
    # The trainer defaults' serviceAccountName: what a job naming none runs as.
    default_service_account: str | None = None

    def _image_denied(self, image: str) -> bool:
        allowed = self.allowed_images
        return bool(allowed) and not any(fnmatch.fnmatchcase(image, p) for p in allowed)

    def _account_denied(self, account: str | None) -> bool:
        allowed = self.allowed_service_accounts
        return bool(account and allowed and account not in allowed)

    def denies(self, job: FineTuneJob) -> str | None:
        """Why the operator refuses to run this job, or None. The lists apply to what the
        pods would really run: the job's image and service account, else the defaults."""
        res = job.spec.resources
        image = res.image or self.default_image
        if self._image_denied(image):
            return (
                f"spec.resources.image {image!r} is not allowed by the operator "
                f"(--allowed-image: {', '.join(self.allowed_images)}); use an allowed image "
                "or ask the cluster admin to allow it"
            )
        sa = res.service_account_name or self.default_service_account
        if self._account_denied(sa):
            return (
                f"spec.resources.serviceAccountName {sa!r} is not allowed by the operator "
                f"(--allowed-service-account: {', '.join(self.allowed_service_accounts)}); "
                "use an allowed one or leave it out (the namespace's default)"
            )
        return None

    def default_problems(self) -> list[str]:
        """The operator's own defaults outside its allow-lists: refused at start, or every
        job that names neither would fail Forbidden."""
        problems = []
        if self._image_denied(self.default_image):
            problems.append(
                f"--image {self.default_image!r} is not allowed by --allowed-image "
                f"({', '.join(self.allowed_images)}); allow it or change the default image"
            )
        if self._account_denied(self.default_service_account):
            problems.append(
                f"trainer defaults serviceAccountName {self.default_service_account!r} is not "
                f"allowed by --allowed-service-account ({', '.join(self.allowed_service_accounts)})"
                "; allow it or change the default"
            )
        return problems


# With KUBETUNE_ALLOCATOR=jemalloc (opt-in; the image has libjemalloc2; __main__ re-executes
# onto it): Python's small objects through jemalloc too, freed pages returned within a
# second. At 5000 running jobs a replica that took over then holds 337 MiB instead of 513,
# but its start-up peak is the same (~520 MiB) and it costs 3-25% more CPU per job
# (bench/findings.md, "jemalloc for the operator").
MALLOC_SETTINGS = {
    "PYTHONMALLOC": "malloc",
    "MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:1000",
}


@dataclass(frozen=True)
class OperatorConfig:
    # How often a running FineTuneJob is looked at without any event (progress scraping,
    # deadlines); Job/Pod events and spec changes make it due at once.
    reconcile_interval: float = 10.0
    # A running job's progress is written to its status at most this often (seconds), longer
    # when the running jobs would take over half of api_qps; a phase or condition change is
    # written at once (pacing.py). 60 s: at most one progress write per running minute, what
    # a fleet of long jobs can afford (issue 21's write budget); 30 s was twice that.
    status_interval: float = 60.0
    # Client-side cap on Kubernetes API requests (like controller-runtime's QPS/burst):
    # a token bucket of `api_burst` tokens refilled at `api_qps` per second. 500/500 is
    # JobSet's default, the controller that launches training Jobs at scale: a sweep of 1000
    # FineTuneJobs gets its Jobs in seconds, not the ~2 minutes of 50/100 (about 4 capped
    # requests per new job). The server's priority and fairness is the protection: a 429 is
    # waited out (Retry-After). docs/operations.md#api-request-rate.
    api_qps: float = 500.0
    api_burst: int = 500
    image: str = DEFAULT_IMAGE
    metrics_port: int | None = 8080  # operator /metrics; None disables it
    metrics_addr: str = "0.0.0.0"
    # A NetworkPolicy per FineTuneJob (netpol.py), and who may reach the trainers' metrics
    # port besides the job's own pods (NetworkPolicyPeer objects: the operator, Prometheus).
    network_policy: bool = False
    metrics_peers: tuple[dict[str, Any], ...] = ()
    # The namespaces served (--namespace; kopf's patterns allowed: "team-*", "!kube-*");
    # empty: the whole cluster (--all-namespaces). kopf watches the FineTuneJobs there, our
    # informers (informer.py) the Jobs and pods.
    namespaces: tuple[str, ...] = ()
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
    # The platform's trainer-pod settings (--trainer-defaults FILE; the chart's
    # trainerDefaults values); each job's spec.pod refines them (pod_settings.py).
    trainer_defaults: TrainerDefaults = field(default_factory=TrainerDefaults)

    def kopf_scope(self) -> dict[str, Any]:
        """kopf.operator's scope arguments for `namespaces`."""
        return {"clusterwide": not self.namespaces, "namespaces": list(self.namespaces)}

    @property
    def policy(self) -> Policy:
        return Policy(
            self.image,
            self.allowed_images,
            self.allowed_service_accounts,
            self.trainer_defaults.service_account_name,
        )
