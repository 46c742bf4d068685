"""MLflow tracking of one run: params, metrics per logged step, artifacts, registry.

One MLflow run per FineTuneJob, kept across attempts: a resumed attempt continues the same
MLflow run. Its id travels two ways: `RunInfo.state["mlflow_run_id"]` (the engine stores it
in the checkpoint and hands it back), and `tracking/mlflow-run.json` under the run prefix
(so resume also works when the engine does not pass it).

The server is checked once, before training (unreachable -> RetryableError naming the
URI). After that, MLflow never stops training: rows are sent from a background thread and
a failure logs a warning and is dropped.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from pathlib import Path
from typing import Any

from kubetune_api.constants import Env
from kubetune_api.uris import redact_text, split_credentials
from kubetune_trainer import __version__
from kubetune_trainer.errors import ConfigError, RetryableError

from . import missing_extra
from .sinks import LogRow, RunInfo

log = logging.getLogger(__name__)

RUN_ID_KEY = "mlflow_run_id"
RUN_ID_FILE = "tracking/mlflow-run.json"
LOG_ADAPTER_ENV = "KUBETUNE_MLFLOW_LOG_ADAPTER"
# MLflow's own limits (mlflow.utils.validation); copied so importing this module stays light.
MAX_PARAM_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# MLflow retries a failed request 7 times with backoff (~4 minutes); a training run would
# rather drop a point. Used unless the user set these variables.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def redact(uri: str) -> str:
    """The URI (or any message quoting one) with user:password@ masked: never in logs,
    messages or records (kubetune_api.uris.redact_text, shared with the operator)."""
    return redact_text(uri)


def tracking_uri_of(uri: str) -> str:
    """The MLflow URI without user:password@; those go to the variables MLflow's own client
    reads (MLFLOW_TRACKING_USERNAME/PASSWORD; values already set win, as from the operator's
    Secret), so the URI the sink keeps, logs and records holds no password."""
    clean, user, password = split_credentials(uri)
    if user is not None:
        os.environ.setdefault(Env.MLFLOW_USERNAME, user)
        if password is not None:
            os.environ.setdefault(Env.MLFLOW_PASSWORD, password)
    return clean


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """{"spec": {"a": {"b": 1}}} -> {"spec.a.b": "1"}; lists as JSON; None left out.

    Keys and values are cut to MLflow's limits (a long prompt template must not fail a run).
    """
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
    elif obj is not None:
        value = json.dumps(obj) if isinstance(obj, list) else str(obj)
        out[prefix[:MAX_PARAM_KEY]] = value[:MAX_PARAM_VALUE]
    return out


def row_metrics(row: LogRow) -> dict[str, float]:
    names = ("loss", "learning_rate", "grad_norm", "tokens_per_second", "eval_loss", "epoch")
    out = {n: float(getattr(row, n)) for n in names if getattr(row, n) is not None}
    out.update({f"memory_{k}_bytes": float(v) for k, v in row.memory_bytes.items()})
    out.update({re.sub(r"[^\w./ -]", "_", k): float(v) for k, v in row.extra.items()})
    return out


class MlflowSink:
    """A Sink logging to an MLflow tracking server (or sqlite:/// store)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str = "kubetune",
        register_as: str | None = None,
        *,
        log_adapter: bool | None = None,
        store_uri: str | None = None,
        s3_endpoint: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise missing_extra("mlflow-skinny", "MLflow tracking (spec.tracking)") from e

        for k, v in _HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.register_as = register_as
        self.log_adapter = (
            log_adapter
            if log_adapter is not None
            else bool(register_as) or os.environ.get(LOG_ADAPTER_ENV) == "1"
        )
        self.store_uri, self.s3_endpoint = store_uri, s3_endpoint
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.run_id: str | None = None
        self.registered_version: str | None = None
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._failures = 0

    def check(self) -> str:
        """Preflight: reach the server, get or create the experiment; returns its id."""
        try:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is not None:
                return exp.experiment_id
            return self.client.create_experiment(self.experiment)
        except Exception as e:
            where = redact(self.tracking_uri)
            if type(e).__name__ == "MlflowException" and "Connection" not in str(e):
                raise ConfigError(
                    f"MLflow at {where} refused experiment {self.experiment!r}: {e}; "
                    "check tracking.mlflowUri and tracking.experiment"
                ) from e
            raise RetryableError(
                f"MLflow tracking server {where} is unreachable ({type(e).__name__}); start "
                "it or fix tracking.mlflowUri (or remove `tracking` to train without it)"
            ) from e

    # -- Sink ------------------------------------------------------------------------------
    def on_start(self, run: RunInfo, params: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        experiment_id = self.check()
        tags = {
            "kubetune.namespace": run.namespace,
            "kubetune.name": run.name,
            "kubetune.attempt": str(run.attempt),
            "kubetune.version": __version__,
            "kubetune.output": run.output_uri,
        }
        if run.resumed_from:
            tags["kubetune.resumed_from"] = run.resumed_from
        previous = self._previous_run_id(run)
        if previous:
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            log.info("continuing MLflow run %s (attempt %d)", previous, run.attempt)
        else:
            created = self.client.create_run(
                experiment_id, tags=tags, run_name=f"{run.namespace}/{run.name}"
            )
            self.run_id = created.info.run_id
            # A URI with user:password@ (the tracking server's own) is logged redacted.
            flat = {k: redact(v) if "://" in v else v for k, v in flatten_params(params).items()}
            items = [Param(k, v) for k, v in sorted(flat.items())]
            for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        run.state[RUN_ID_KEY] = self.run_id
        self._save_run_id(run)
        self._worker = threading.Thread(target=self._drain, name="mlflow-sink", daemon=True)
        self._worker.start()

    def on_log(self, row: LogRow) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        ts = _now_ms()
        self._queue.put([Metric(k, v, ts, row.step) for k, v in row_metrics(row).items()])

    def on_checkpoint(self, uri: str, step: int, seconds: float) -> None:
        from mlflow.entities import Metric, RunTag

        if self.run_id is None:
            return
        self._queue.put(
            [
                Metric("checkpoint_seconds", seconds, _now_ms(), step),
                RunTag("kubetune.last_checkpoint", uri),
            ]
        )

    def on_end(self, summary: dict[str, Any], artifacts_dir: str | None) -> None:
        if self.run_id is None:
            return
        self._stop_worker()
        final = {k: float(v) for k, v in summary.items() if isinstance(v, int | float)
                 and not isinstance(v, bool)}  # fmt: skip
        self._safely("final metrics", lambda: self._log_final(final, summary))
        if artifacts_dir and Path(artifacts_dir).is_dir():
            report = artifacts_dir
            self._safely("report", lambda: self.client.log_artifacts(self.run_id, report, "report"))
        adapter = _adapter_dir(summary, artifacts_dir)
        if self.log_adapter and adapter is not None:
            folder = str(adapter)
            self._safely(
                "adapter", lambda: self.client.log_artifacts(self.run_id, folder, "adapter")
            )
            if self.register_as:
                self._safely("model registration", lambda: self.register(summary))
        elif self.register_as:
            log.warning("registerAs %r: no local adapter folder to register", self.register_as)
        status = "FAILED" if str(summary.get("status", "")).lower() == "failed" else "FINISHED"
        self._safely("run status", lambda: self.client.set_terminated(self.run_id, status))

    # -- registry --------------------------------------------------------------------------
    def register(self, summary: dict[str, Any]) -> str:
        """Register the run's `adapter` artifact as a new version of `register_as`."""
        from mlflow.exceptions import MlflowException

        assert self.register_as and self.run_id
        try:
            self.client.create_registered_model(
                self.register_as, description="LoRA adapters trained by kubetune"
            )
        except MlflowException as e:
            if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
                raise
        artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
        tags = {"kubetune.adapter_uri": str(summary.get("adapter_uri", ""))}
        version = self.client.create_model_version(
            self.register_as, f"{artifact_uri}/adapter", run_id=self.run_id, tags=tags
        )
        self.registered_version = str(version.version)
        self.client.set_tag(self.run_id, "kubetune.registered_model",
                            f"{self.register_as}/{version.version}")  # fmt: skip
        return self.registered_version

    # -- internals -------------------------------------------------------------------------
    def _log_final(self, final: dict[str, float], summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        ts, step = _now_ms(), int(summary.get("steps", 0) or 0)
        metrics = [Metric(f"final.{k}", v, ts, step) for k, v in sorted(final.items())]
        tags = [RunTag(f"kubetune.{k}", str(v)[:5000]) for k, v in summary.items()
                if isinstance(v, str)]  # fmt: skip
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def flush(self) -> None:
        """Wait until every row queued so far was sent (or dropped after a failure)."""
        if self._worker is not None:
            self._queue.join()

    def close(self) -> None:
        """Send what is queued and stop the sender thread, without ending the MLflow run."""
        self._stop_worker()

    def _drain(self) -> None:
        from mlflow.entities import Metric

        while (batch := self._queue.get()) is not None:
            metrics = [m for m in batch if isinstance(m, Metric)]
            tags = [t for t in batch if not isinstance(t, Metric)]
            try:
                for i in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
                    chunk = metrics[i : i + MAX_METRICS_PER_BATCH]
                    self.client.log_batch(self.run_id, metrics=chunk, tags=tags if i == 0 else [])
            except Exception as e:  # training outlives dashboards: warn and drop the point
                self._failures += 1
                if self._failures == 1 or self._failures % 50 == 0:
                    log.warning("MLflow logging failed (%d so far), continuing: %s",
                                self._failures, e)  # fmt: skip
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _stop_worker(self, timeout: float = 120) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
            self._worker = None

    def _safely(self, what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as e:
            log.warning("MLflow %s failed, continuing: %s", what, e)

    def _previous_run_id(self, run: RunInfo) -> str | None:
        candidate = run.state.get(RUN_ID_KEY)
        if not candidate and run.resumed_from and self.store_uri:
            try:
                candidate = json.loads(self._store().get_bytes(RUN_ID_FILE))["run_id"]
            except (FileNotFoundError, KeyError, ValueError):
                candidate = None
        if not candidate:
            return None
        try:
            self.client.get_run(candidate)
            return candidate
        except Exception:
            log.warning("MLflow run %s not found: starting a new run", candidate)
            return None

    def _save_run_id(self, run: RunInfo) -> None:
        if self.store_uri:
            body = json.dumps({"run_id": self.run_id, "tracking_uri": redact(self.tracking_uri)})
            self._safely(
                "run id record", lambda: self._store().put_bytes(RUN_ID_FILE, body.encode())
            )

    def _store(self) -> Any:
        from kubetune_trainer.storage import open_store

        return open_store(self.store_uri or "", endpoint_url=self.s3_endpoint)


def _adapter_dir(summary: dict[str, Any], artifacts_dir: str | None) -> Path | None:
    """The local adapter folder: summary["adapter_dir"], else `adapter/` beside the report."""
    for cand in (
        summary.get("adapter_dir"),
        artifacts_dir and Path(artifacts_dir).parent / "adapter",
    ):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def sink_for(job: Any, run: RunInfo) -> MlflowSink | None:
    """The engine's hook: an MlflowSink when spec.tracking.mlflowUri is set (rank 0 only).

    It logs the adapter and registers it as a model version under registerAs, else the
    job's name: with tracking configured, every adapter is in MLflow's model registry.

    Checks the server here, before training starts (the engine's fan-out would only warn).
    """
    tracking = job.spec.tracking
    if not tracking.mlflow_uri or run.rank != 0:
        return None
    sink = MlflowSink(
        tracking_uri_of(tracking.mlflow_uri),
        tracking.experiment,
        # The registry names the model registerAs, else the job (kubetune_trainer.registry).
        tracking.register_as or job.metadata.name,
        store_uri=run.output_uri,
        s3_endpoint=job.spec.output.s3_endpoint,
    )
    sink.check()
    return sink
