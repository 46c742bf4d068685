"""Operator metrics on their own registry (never the global one: tests run several operators
in one process, and a library's default collectors are not ours to export).

Per-job series are labelled `namespace` and `finetunejob`, never `job` (Prometheus's own
target label). Scraped through the chart's ServiceMonitor, whose target `namespace` is the
operator's, a relabeling restores the FineTuneJob's namespace (see servicemonitor.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetune_api.constants import Phase
from kubetune_api.status import FineTuneJobStatus

from .status import parse_time


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs = Gauge("kubetune_jobs", "FineTuneJobs by phase.", ["phase"], registry=r)
        # Jobs per phase, counted once: the gauge reads it at scrape time, the pacing
        # (reconcile._progress_interval) through count().
        self._counts: dict[str, int] = {}
        for phase in Phase.ALL:
            self._register_phase(phase)
        self.reconcile_seconds = Histogram(
            "kubetune_reconcile_seconds", "Time of one reconciliation.", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.restarts = Counter(
            "kubetune_job_restarts_total", "Attempts started after a failure.",
            ["namespace", "finetunejob", "reason"], registry=r,
        )  # fmt: skip
        # One series per job, labelled with its phase now: alerts read "Failed since when"
        # from the job's own status, so an operator restart or a new pod never looks like
        # a new failure. Made at scrape time from `_since`: a Gauge child per job would
        # hold ~0.75 KiB (its own object, lock and value) for a tuple's worth (issue 21).
        self._since: dict[tuple[str, str], tuple[str, str, float]] = {}  # -> phase, reason, t
        r.register(PhaseSince(self._since))
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
        self.api_deferred = Counter(
            "kubetune_api_deferred_total",
            "Progress-only status writes left to a later look while jobs were being created.",
            registry=r,
        )  # fmt: skip
        self.api_throttled = Counter(
            "kubetune_api_throttled_total",
            "429 answers (API priority and fairness) retried after Retry-After.",
            ["verb"], registry=r,
        )  # fmt: skip
        self._phases: dict[tuple[str, str], str] = {}

    def set_phase(
        self, namespace: str, name: str, phase: str | None, entered: tuple[float, str] | None = None
    ) -> None:
        """Track each job's phase so the gauge counts jobs, not transitions (O(1) a call: it
        runs on every reconcile of every job). `entered` is (Unix time, reason) from
        phase_entered(): the per-job series."""
        key = (namespace, name)
        if phase is not None and entered is not None:
            self._since[key] = (phase, entered[1], entered[0])
        else:
            self._since.pop(key, None)
        old = self._phases.get(key)
        if old == phase:
            return
        if old is not None:
            self._counts[old] -= 1
        if phase is None:
            self._phases.pop(key, None)
            # A deleted job leaves no series behind: no per-job history in the operator.
            for labels in [k for k in self.restarts._metrics if k[:2] == key]:
                self.restarts.remove(*labels)
        else:
            self._phases[key] = phase
            self._register_phase(phase)
            self._counts[phase] += 1

    def _register_phase(self, phase: str) -> None:
        """A count for `phase` from 0, which the gauge's series reads at scrape time."""
        if phase not in self._counts:
            self._counts[phase] = 0
            self.jobs.labels(phase).set_function(lambda: self._counts[phase])

    def count(self, phase: str) -> int:
        """Jobs in `phase` now (what the kubetune_jobs gauge shows)."""
        return self._counts.get(phase, 0)

    @staticmethod
    def phase_entered(status: FineTuneJobStatus, created: str | None) -> tuple[float, str]:
        """(Unix time, reason) the job entered `status.phase`, from its own status.

        The condition of the same type when it is True (Failed, Running, ...), else the
        latest condition change (Pending: the Job was created or a retry waits), else the
        object's creation time.
        """
        own = [c for c in status.conditions if c.type == status.phase and c.status == "True"]
        conds = own or sorted(status.conditions, key=lambda c: c.last_transition_time)[-1:]
        for cond in conds:
            at = parse_time(cond.last_transition_time)
            if at is not None:
                return at.timestamp(), cond.reason if own else ""
        at = parse_time(created)
        return (at.timestamp() if at else 0.0), ""

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Start /metrics in a thread; returns the server (call .shutdown() to stop)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


class PhaseSince(Collector):
    """kubetune_job_phase_timestamp_seconds{namespace,finetunejob,phase,reason}, one series
    per job, read from OperatorMetrics._since when scraped."""

    def __init__(self, since: dict[tuple[str, str], tuple[str, str, float]]) -> None:
        self._since = since

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "kubetune_job_phase_timestamp_seconds",
            "Unix time the FineTuneJob entered its current phase (reason: the phase's condition).",
            labels=["namespace", "finetunejob", "phase", "reason"],
        )
        for (ns, name), (phase, reason, at) in list(self._since.items()):
            family.add_metric([ns, name, phase, reason], at)
        yield family
