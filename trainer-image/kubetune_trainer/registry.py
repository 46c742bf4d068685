"""The adapter registry: one JSON record per trained adapter version, beside the outputs.

Layout under the output root (a local folder or s3://, through the storage interface)::

    <output>/registry/<name>/v<N>.json    one record per version (the source of truth)
    <output>/registry/index.json          {name: {latest, versions: [N...]}} for listing

Versions count up per name from 1. Every object is written whole (local: tmp + rename;
S3: a single PUT), so a reader sees a complete record or none. The index is derived
from the version files and rewritten after each registration; `list_adapters` rebuilds
it from the version files when it is missing or stale. Two jobs registering the same
name at the same instant each get their own version number: a version file is created
only if absent (local: link; S3: conditional PUT, If-None-Match), and the loser of a race
takes the next number. The index is a cache; a stale one is rebuilt.

When spec.tracking.mlflowUri is set, the adapter is also a model version in MLflow's
model registry, under the same name (spec.tracking.registerAs, else the job's name).
During `kubetune run` the MLflow sink (reporting/tracking.py) has already registered the run's
adapter artifact; that version is found by the run id the sink stored under the run
prefix (tracking/mlflow-run.json) and reused. Without such a run (registry used on its
own), a version is created here with the adapter URI as its source. Either way the
version carries the record's lineage as tags (LINEAGE_TAGS, plus registry_version), and
an unreachable or refusing MLflow only costs the MLflow half: the record is still
stored, its `mlflow` field saying what failed.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import redact_spec
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.recipes.hyperparameters import objective_options  # report and record
from kubetune_trainer.reporting.tracking import redact

REGISTRY_PREFIX = "registry"
INDEX = "index.json"
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Record fields copied onto the MLflow model version as tags (None values are left out).
LINEAGE_TAGS = ("adapter_uri", "adapter_sha256", "adapter_size", "base_model", "base_revision",
                "dataset_uri", "dataset_format", "dataset_fingerprint", "objective")  # fmt: skip

Record = dict[str, Any]
log = logging.getLogger(__name__)


def open_registry(output_uri: str, endpoint_url: str | None = None) -> Any:
    """The Store rooted at <output>/registry (a local output root must not be '/')."""
    from kubetune_api.uris import is_remote
    from kubetune_trainer.storage import open_store
    from kubetune_trainer.storage.paths import check_local_root

    if not is_remote(output_uri):
        check_local_root(output_uri.removeprefix("file://"))
    return open_store(f"{output_uri.rstrip('/')}/{REGISTRY_PREFIX}", endpoint_url=endpoint_url)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' -> (name, None: latest); 'name:3' or 'name:v3' -> (name, 3)."""
    name, sep, ver = ref.partition(":")
    check_name(name)
    if not sep:
        return name, None
    digits = ver.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise ConfigError(f"{ref!r}: the version after ':' must be a number from 1, e.g. {name}:2")
    return name, int(digits)


def check_name(name: str) -> str:
    # One path segment that cannot be '.' or '..' (it starts with a letter or digit);
    # fullmatch, since '$' alone would let a trailing newline through.
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a registry name: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, starting with a letter or digit)"
        )
    return name


def versions(store: Any, name: str, prefix: str = "") -> list[int]:
    """The version numbers of `name`'s vN.json records (under `prefix/`, e.g. datasets)."""
    folder = f"{prefix}/{name}/" if prefix else f"{name}/"
    found = []
    for key in store.list(folder):
        m = _VERSION_FILE.match(key.rsplit("/", 1)[-1])
        if m and key.count("/") == folder.count("/"):
            found.append(int(m.group(1)))
    return sorted(found)


def build_record(job: FineTuneJob, report: dict[str, Any], run_uri: str | None = None) -> Record:
    """The registry record of one successful run, from the engine's report."""
    spec = job.spec
    results = report.get("results") or {}
    adapter = report.get("adapter") or {}
    evaluation = report.get("evaluation") or {}
    metrics = {k: v for k, v in results.items() if isinstance(v, (int, float)) and v is not None}
    tuned = evaluation.get("tuned") if isinstance(evaluation, dict) else None
    if isinstance(tuned, dict):
        metrics.update({f"eval/{k}": v for k, v in tuned.get("metrics", {}).items()})
    return {
        "base_model": report.get("base_model", spec.model.base),
        "base_revision": base_revision(job),
        "adapter_uri": adapter.get("uri"),
        "adapter_sha256": adapter.get("sha256"),
        "adapter_size": adapter.get("size"),
        "dataset_uri": spec.dataset.source,
        "dataset_format": (report.get("data") or {}).get("format", spec.dataset.format),
        "dataset_fingerprint": (report.get("data") or {}).get("fingerprint")
        or results.get("data_fingerprint"),
        "objective": spec.objective,
        "job": {"namespace": job.metadata.namespace, "name": job.metadata.name},
        "run_uri": run_uri,
        "spec": _spec_without_secrets(job),
        "metrics": metrics,
        "final_loss": results.get("final_train_loss"),
        "training_seconds": report.get("training_seconds"),
        # A report written before its hyperparameters carried them still gets them here.
        "hyperparameters": {**report.get("hyperparameters", {}), **objective_options(job)},
    }


def _spec_without_secrets(job: FineTuneJob) -> dict[str, Any]:
    """The full spec, with any user:password@ in a URL (mlflowUri, pushgatewayUrl...) masked."""
    return redact_spec(job.to_manifest()["spec"])


def base_revision(job: FineTuneJob) -> str | None:
    """The base's revision: for a hub id, the commit its local hub cache resolves
    spec.model.revision (default main) to, read offline; else spec.model.revision as given
    (None for builtin, local and s3:// bases, or a hub base missing from the cache)."""
    from pathlib import Path

    from kubetune_api.uris import scheme_of

    m = job.spec.model
    if (m.revision and _COMMIT.match(m.revision)) or scheme_of(m.base) != "":
        return m.revision
    if m.base.startswith((".", "/", "~")) or Path(m.base).is_dir():
        return m.revision  # a local folder has no hub revision
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(m.base, "config.json", revision=m.revision or "main")
    except Exception:  # not a valid repo id, unreadable cache: nothing to resolve
        return m.revision
    if isinstance(found, str) and _COMMIT.match(Path(found).parent.name):
        return Path(found).parent.name  # .../snapshots/<commit>/config.json
    return m.revision


def register(
    output_uri: str,
    name: str,
    record: Record,
    endpoint_url: str | None = None,
    now: datetime | None = None,
) -> Record:
    """Store `record` as the next version of `name`; returns it with name/version/created_at."""
    check_name(name)
    store = open_registry(output_uri, endpoint_url)
    version = (versions(store, name) or [0])[-1] + 1
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    while True:
        full = {"name": name, "version": version, "created_at": created, **record}
        key, data = f"{name}/v{version}.json", _dump(full)
        # Equal content: our own PUT landed and its response was lost, then retried.
        if store.create_bytes(key, data) or store.get_bytes(key) == data:
            break
        version += 1  # another job took this number meanwhile
    _write_index(store)
    return full


def register_run(
    job: FineTuneJob,
    report: dict[str, Any],
    run_uri: str | None = None,
    output_uri: str | None = None,
) -> Record:
    """Everything after a successful run: the registry record, and MLflow when configured.

    Name: spec.tracking.registerAs, else the job's name (in both registries).
    """
    spec = job.spec
    name = spec.tracking.register_as or job.metadata.name
    record = build_record(job, report, run_uri)
    uri = spec.tracking.mlflow_uri
    if uri:
        record["mlflow"] = _mlflow_version(uri, name, record, run_uri, spec.output.s3_endpoint)
    full = register(output_uri or spec.output.uri, name, record, spec.output.s3_endpoint)
    mv = full.get("mlflow") or {}
    if "version" in mv:
        try:
            _tag_version(uri or "", name, mv["version"], {"registry_version": full["version"]})
        except Exception as exc:
            log.warning("MLflow: could not tag %s v%s: %s", name, mv["version"], redact(str(exc)))
    return full


def _mlflow_version(
    uri: str, name: str, record: Record, run_uri: str | None, endpoint_url: str | None
) -> Record:
    """The model version of this run (the sink's, else a new one), tagged with the lineage."""
    try:
        run_id = _mlflow_run_id(run_uri, endpoint_url)
        mv = existing_mlflow_version(uri, name, run_id)
        if mv is not None:  # the sink's version: it knew no lineage but the adapter URI
            _tag_version(uri, name, mv["version"], lineage_tags(record))
        else:
            mv = register_mlflow(uri, name, record, run_id)  # tagged as it is created
        return {**mv, "tracking_uri": redact(uri)}
    except Exception as exc:  # the adapter and its record must outlive an MLflow outage
        error = redact(str(exc))  # MLflow's messages repeat the URI, password included
        log.warning("MLflow model registry %s: could not register %s: %s", redact(uri), name, error)
        return {"tracking_uri": redact(uri), "name": name, "error": error[:500]}


def lineage_tags(record: Record) -> dict[str, str]:
    tags = {k: str(record[k]) for k in LINEAGE_TAGS if record.get(k) is not None}
    job = record.get("job") or {}
    if job:
        tags["job"] = f"{job.get('namespace')}/{job.get('name')}"
    return tags


def _tag_version(uri: str, name: str, version: int, tags: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def record_success(
    job: FineTuneJob, report: dict[str, Any], run_uri: str, output_uri: str
) -> Record | None:
    """What the engine calls after a successful run (rank 0): never fails the run."""
    try:
        return register_run(job, report, run_uri, output_uri)
    except Exception as exc:  # the adapter is saved; a registry problem must not lose it
        log.warning("adapter registry: could not record %s: %s", job.metadata.name, exc)
        return None


def _mlflow_run_id(run_uri: str | None, endpoint_url: str | None) -> str | None:
    """The MLflow run id the tracking sink stored under the run prefix, if any."""
    if not run_uri:
        return None
    from kubetune_trainer.reporting.tracking import RUN_ID_FILE
    from kubetune_trainer.storage import open_store

    try:
        return json.loads(open_store(run_uri, endpoint_url=endpoint_url).get_bytes(RUN_ID_FILE))[
            "run_id"
        ]
    except (FileNotFoundError, KeyError, ValueError):
        return None


def existing_mlflow_version(tracking_uri: str, name: str, run_id: str | None) -> Record | None:
    """The model version of `name` the tracking sink registered for `run_id` (latest)."""
    if not run_id:
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not found:
        return None
    version = max(int(v.version) for v in found)
    return {"tracking_uri": tracking_uri, "name": name, "version": version, "run_id": run_id}


def register_mlflow(tracking_uri: str, name: str, record: Record, run_id: str | None) -> Record:
    """A new model version in MLflow's registry whose source is the adapter URI."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.create_registered_model(name, description="LoRA adapters trained by kubetune")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(
        name, source=str(record["adapter_uri"]), run_id=run_id, tags=lineage_tags(record)
    )
    return {"tracking_uri": tracking_uri, "name": name, "version": int(mv.version)}


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()


def _build_index(store: Any) -> dict[str, Any]:
    names = sorted({k.split("/", 1)[0] for k in store.list("") if "/" in k})
    index = {}
    for name in names:
        vs = versions(store, name)
        if vs:
            index[name] = {"latest": vs[-1], "versions": vs}
    return index


def _write_index(store: Any) -> dict[str, Any]:
    index = _build_index(store)
    store.put_bytes(INDEX, _dump(index))
    return index


def load_index(output_uri: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """{name: {latest, versions}}; rebuilt from the version files if missing or stale."""
    store = open_registry(output_uri, endpoint_url)
    try:
        index = json.loads(store.get_bytes(INDEX))
    except FileNotFoundError:
        index = None
    fresh = _build_index(store)
    return fresh if index != fresh else index


def get(output_uri: str, ref: str, endpoint_url: str | None = None) -> Record:
    """The record of `name` (latest) or `name:N`."""
    name, version = parse_ref(ref)
    store = open_registry(output_uri, endpoint_url)
    known = versions(store, name)
    if not known:
        raise ConfigError(f"no adapter named {name!r} in {store.uri()}")
    version = version or known[-1]
    if version not in known:
        raise ConfigError(
            f"{name} has no version {version} in {store.uri()}; versions: "
            + ", ".join(map(str, known))
        )
    return json.loads(store.get_bytes(f"{name}/v{version}.json"))


def list_adapters(output_uri: str, endpoint_url: str | None = None) -> list[Record]:
    """The latest record of every name, sorted by name."""
    index = load_index(output_uri, endpoint_url)
    return [get(output_uri, f"{n}:{e['latest']}", endpoint_url) for n, e in sorted(index.items())]
