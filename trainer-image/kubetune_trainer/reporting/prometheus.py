"""Prometheus metrics of one training run: a `/metrics` endpoint and a final Pushgateway push.

The operator scrapes rank 0's endpoint to keep FineTuneJob status current; Prometheus
scrapes it for dashboards and alerts. Every series carries `namespace` and `finetunejob`
(the FineTuneJob's name): never `job`, which is Prometheus's own target label, so no scrape
needs `honor_labels`. Token throughput is a counter (`kubetune_train_tokens_total`): read it
with `rate()`.

`METRIC_NAMES` / `METRICS` are the one list of exported names (dashboards and alert rules
are checked against it); this module imports no torch, and prometheus_client only where a
sink is built (reading `METRICS` needs neither).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from . import missing_extra
from .sinks import LogRow, RunInfo

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger(__name__)

LABELS: Final = ("namespace", "finetunejob")
# Checkpoint upload durations: seconds for a LoRA adapter, minutes for a full optimizer state.
CHECKPOINT_BUCKETS: Final = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
LINGER_ENV: Final = "KUBETUNE_METRICS_LINGER_SECONDS"
ADDR_ENV: Final = "KUBETUNE_METRICS_ADDR"


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: Literal["gauge", "counter", "histogram"]
    help: str
    labels: tuple[str, ...] = LABELS
    row_field: str | None = None  # the LogRow field it mirrors


METRICS: Final = (
    MetricDef("kubetune_train_loss", "gauge", "Training loss at the last logging step.",
              row_field="loss"),
    MetricDef("kubetune_train_learning_rate", "gauge", "Current learning rate.",
              row_field="learning_rate"),
    MetricDef("kubetune_train_grad_norm", "gauge", "Gradient norm before clipping.",
              row_field="grad_norm"),
    MetricDef("kubetune_train_tokens", "counter",
              "Real (non-padding) tokens processed by this attempt, all ranks (exposed as "
              "kubetune_train_tokens_total; read it with rate()).", row_field="tokens_seen"),
    MetricDef("kubetune_train_step", "gauge", "Optimizer steps done.", row_field="step"),
    MetricDef("kubetune_train_total_steps", "gauge", "Optimizer steps planned.",
              row_field="total_steps"),
    MetricDef("kubetune_train_epoch", "gauge", "Fractional epoch.", row_field="epoch"),
    MetricDef("kubetune_train_eta_seconds", "gauge", "Estimated seconds to the end of training.",
              row_field="eta_seconds"),
    MetricDef("kubetune_eval_loss", "gauge", "Loss on the validation split at the last evaluation.",
              row_field="eval_loss"),
    MetricDef("kubetune_eval_loss_rises", "gauge",
              "Evaluations in a row whose loss was above the one before (0 after a fall)."),
    MetricDef("kubetune_memory_bytes", "gauge",
              "Memory in use by kind (rss, gpu_allocated, gpu_reserved...).",
              labels=(*LABELS, "kind")),
    MetricDef("kubetune_checkpoint_timestamp_seconds", "gauge",
              "Unix time the last checkpoint of this attempt was committed."),
    MetricDef("kubetune_checkpoint_seconds", "histogram",
              "Seconds to save and commit one checkpoint (upload included)."),
)  # fmt: skip
METRIC_NAMES: Final = tuple(m.name for m in METRICS)


def default_bind_address() -> str:
    """0.0.0.0 inside a pod (the operator and Prometheus scrape the pod IP), else loopback."""
    if os.environ.get(ADDR_ENV):
        return os.environ[ADDR_ENV]
    return "0.0.0.0" if os.environ.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"


class PrometheusSink:
    """A Sink that serves the run's metrics on `port` (0 = any free port; see `.port`).

    Only rank 0 should create one (the caller decides). `linger_seconds` keeps the endpoint
    up after the end so a last scrape sees the final values (default from
    KUBETUNE_METRICS_LINGER_SECONDS, else 0); `pushgateway_url` also pushes them there.
    """

    def __init__(
        self,
        port: int,
        *,
        addr: str | None = None,
        pushgateway_url: str | None = None,
        pushgateway_auth: tuple[str, str] | None = None,
        linger_seconds: float | None = None,
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
            from prometheus_client.exposition import start_http_server
        except ImportError as e:
            raise missing_extra("prometheus-client", "the /metrics endpoint (spec.metrics)") from e

        self.registry = CollectorRegistry(auto_describe=True)  # never the global registry
        self.gauges: dict[str, Gauge] = {}
        for m in METRICS:
            if m.kind == "gauge":
                self.gauges[m.name] = Gauge(m.name, m.help, m.labels, registry=self.registry)
        tokens = next(m for m in METRICS if m.kind == "counter")
        self.tokens = Counter(tokens.name, tokens.help, tokens.labels, registry=self.registry)
        self._tokens_counted = 0  # the counter's value: rows carry this attempt's running total
        self._last_eval: float | None = None
        self._eval_rises = 0
        ckpt = next(m for m in METRICS if m.kind == "histogram")
        self.checkpoint_seconds = Histogram(
            ckpt.name,
            ckpt.help,
            ckpt.labels,
            buckets=CHECKPOINT_BUCKETS,
            registry=self.registry,
        )
        # Credentials never ride in the URL (it is logged on failure): basic auth instead.
        self.pushgateway_url = pushgateway_url
        self.pushgateway_auth = pushgateway_auth
        if linger_seconds is None:
            linger_seconds = float(os.environ.get(LINGER_ENV, "0") or 0)
        self.linger_seconds = linger_seconds
        self._last_scrape = 0.0
        self.registry.register(_ScrapeClock(self))
        self.addr = addr or default_bind_address()
        self._server, self._thread = start_http_server(port, self.addr, registry=self.registry)
        self.port: int = self._server.server_port
        self._labels: dict[str, str] = {"namespace": "", "finetunejob": ""}

    # -- Sink ------------------------------------------------------------------------------
    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        self._labels = {"namespace": run.namespace, "finetunejob": run.name}

    def on_log(self, row: LogRow) -> None:
        for m in METRICS:
            value = getattr(row, m.row_field) if m.row_field else None
            if value is not None and m.kind == "gauge":
                self.gauges[m.name].labels(**self._labels).set(float(value))
        if row.tokens_seen is not None and row.tokens_seen > self._tokens_counted:
            self.tokens.labels(**self._labels).inc(row.tokens_seen - self._tokens_counted)
            self._tokens_counted = row.tokens_seen
        if row.eval_loss is not None and not math.isnan(row.eval_loss):  # NaN: its own alert
            rose = self._last_eval is not None and row.eval_loss > self._last_eval
            self._eval_rises = self._eval_rises + 1 if rose else 0
            self._last_eval = row.eval_loss
            self.gauges["kubetune_eval_loss_rises"].labels(**self._labels).set(self._eval_rises)
        for kind, used in row.memory_bytes.items():
            self.gauges["kubetune_memory_bytes"].labels(**self._labels, kind=kind).set(used)

    on_gauges = on_log  # SinkFanout.on_gauges: ETA and memory rows between logging steps

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        self.checkpoint_seconds.labels(**self._labels).observe(seconds)
        self.gauges["kubetune_checkpoint_timestamp_seconds"].labels(**self._labels).set(time.time())

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        if self.pushgateway_url:
            self.push()
        if self.linger_seconds > 0:
            self.linger(self.linger_seconds)
        self.close()

    # -- the rest --------------------------------------------------------------------------
    def push(self) -> None:
        """Push the current values to the Pushgateway; a failure only warns.

        Grouped by `namespace` and `finetunejob` (the series' own labels, so the Pushgateway
        accepts them unchanged) under the Pushgateway job `kubetune`.
        """
        from prometheus_client import push_to_gateway
        from prometheus_client.exposition import basic_auth_handler

        assert self.pushgateway_url
        kwargs: dict[str, Any] = {}
        if self.pushgateway_auth is not None:
            user, password = self.pushgateway_auth

            def handler(url: str, method: str, timeout: Any, headers: Any, data: bytes) -> Any:
                return basic_auth_handler(url, method, timeout, headers, data, user, password)

            kwargs["handler"] = handler
        try:
            push_to_gateway(
                self.pushgateway_url,
                job="kubetune",
                grouping_key=dict(self._labels),
                registry=self.registry,
                timeout=10,
                **kwargs,
            )
        except OSError as e:
            log.warning("push to the Pushgateway %s failed: %s", self.pushgateway_url, e)

    def linger(self, seconds: float) -> bool:
        """Keep serving until the final values were scraped once, at most `seconds`.

        Returns whether a scrape happened. A short-lived run (a few steps on a laptop or in
        a test) would otherwise end between two scrapes and never show its last values.
        """
        ended = time.time()
        log.info("metrics stay up on port %d until scraped (at most %.0f s)", self.port, seconds)
        while time.time() - ended < seconds:
            if self._last_scrape > ended:
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None  # type: ignore[assignment]


def pushgateway_target(url: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """(URL without user:password@, basic-auth pair or None). The pair comes from
    KUBETUNE_PUSHGATEWAY_USERNAME/PASSWORD (the operator's Secret), else from the URL."""
    if not url:
        return None, None
    from kubetune_api.constants import Env
    from kubetune_api.uris import split_credentials

    clean, user, password = split_credentials(url)
    user = os.environ.get(Env.PUSHGATEWAY_USERNAME) or user
    password = os.environ.get(Env.PUSHGATEWAY_PASSWORD) or password
    return clean, (user, password or "") if user else None


def sink_for(job: Any, run: RunInfo) -> PrometheusSink | None:
    """The engine's hook: rank 0 serves /metrics on spec.metrics.port.

    KUBETUNE_METRICS_PORT overrides the port (0 = any free port). Outside a pod a busy
    port (another local run) falls back to a free one with a warning: in a pod the port is
    the pod's own, so the operator's scrape address stays right.
    """
    if run.rank != 0:
        return None
    from kubetune_api.constants import Env

    spec = job.spec.metrics
    port = int(os.environ.get(Env.METRICS_PORT) or spec.port)
    url, auth = pushgateway_target(spec.pushgateway_url)
    try:
        sink = PrometheusSink(port, pushgateway_url=url, pushgateway_auth=auth)
    except OSError as e:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise
        sink = PrometheusSink(0, pushgateway_url=url, pushgateway_auth=auth)
        log.warning("metrics port %d is busy (%s): serving /metrics on port %d", port, e, sink.port)
    log.info("Prometheus metrics on http://%s:%d/metrics", sink.addr, sink.port)
    return sink


class _ScrapeClock:
    """A collector with no series: notes the time of every scrape (for `linger`)."""

    def __init__(self, sink: PrometheusSink) -> None:
        self.sink = sink

    def collect(self) -> list[Any]:
        self.sink._last_scrape = time.time()
        return []

    def describe(self) -> list[Any]:
        return []  # registering must not call collect(): that is not a scrape
