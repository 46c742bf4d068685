"""Operator metrics on their own registry (never the global one: tests run several operators
in one process, and a library's default collectors are not ours to export)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kubetune_api.constants import Phase


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs = Gauge("kubetune_jobs", "FineTuneJobs by phase.", ["phase"], registry=r)
        for phase in Phase.ALL:
            self.jobs.labels(phase).set(0)
        self.reconcile_seconds = Histogram(
            "kubetune_reconcile_seconds", "Time of one reconciliation.", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.restarts = Counter(
            "kubetune_job_restarts_total", "Attempts started after a failure.",
            ["namespace", "job", "reason"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "kubetune_job_duration_seconds", "From first attempt to the end of a FineTuneJob.",
            ["phase"], registry=r,
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200),
        )  # fmt: skip
        self.api_errors = Counter(
            "kubetune_api_errors_total", "Failed Kubernetes API calls.", ["verb", "code"],
            registry=r,
        )  # fmt: skip
        self.cache_misses = Counter(
            "kubetune_cache_misses_total",
            "Reads the watch cache could not answer (a GET/LIST instead), by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.api_requests = Counter(
            "kubetune_api_requests_total",
            "Kubernetes API requests sent by the operator's client (retries included).",
            ["verb"], registry=r,
        )  # fmt: skip
        self.api_wait = Counter(
            "kubetune_api_client_wait_seconds_total",
            "Seconds requests waited for the client-side rate limit (--qps/--burst).",
            registry=r,
        )  # fmt: skip
        self.api_throttled = Counter(
            "kubetune_api_throttled_total",
            "429 answers (API priority and fairness) retried after Retry-After.",
            ["verb"], registry=r,
        )  # fmt: skip
        self._phases: dict[tuple[str, str], str] = {}

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Track each job's phase so the gauge counts jobs, not transitions (O(1) a call:
        it runs on every reconcile of every job)."""
        key = (namespace, name)
        old = self._phases.get(key)
        if old == phase:
            return
        if old is not None:
            self.jobs.labels(old).dec()
        if phase is None:
            self._phases.pop(key, None)
            # A deleted job leaves no series behind: no per-job history in the operator.
            for labels in [k for k in self.restarts._metrics if k[:2] == key]:
                self.restarts.remove(*labels)
        else:
            self._phases[key] = phase
            self.jobs.labels(phase).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Start /metrics in a thread; returns the server (call .shutdown() to stop)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
