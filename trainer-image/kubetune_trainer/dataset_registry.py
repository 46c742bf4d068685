"""The dataset registry: datasets by name and version, beside the adapter registry.

    <output>/registry/_datasets/<name>/v<N>.json    one record per version

(`_datasets` cannot be an adapter name, which starts with a letter or digit.) A record
holds the source URI as registered (a local path made absolute, or s3://), its format,
`raw_sha256` (sha256 of the raw bytes: of the file, or of the sorted list of a folder's
data files with their own sha256) and `records_fingerprint` (the prepared records'
fingerprint, data/fingerprint.py, with the default split). Versions count up from 1 and
are written once, as adapter versions are (registry.py).

A job names one as `dataset.source: dataset://NAME` (the latest) or `dataset://NAME@vN`.
Before its data is read, the run pins the version (`dataset://NAME@vN`: what the adapter
registry's lineage records as dataset_uri), and checks the bytes still hash to
raw_sha256: a file changed under the same version is refused (BadDataError).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.spec import FineTuneJob
from kubetune_api.uris import is_remote
from kubetune_trainer.errors import BadDataError, ConfigError
from kubetune_trainer.registry import _dump, check_name, open_registry
from kubetune_trainer.registry import versions as adapter_versions

PREFIX = "_datasets"
SCHEME = "dataset://"
_REF = re.compile(r"^dataset://([^@/]+)(?:@v?(\d+))?$")
Record = dict[str, Any]


def parse_dataset_ref(uri: str) -> tuple[str, int | None]:
    m = _REF.fullmatch(uri)
    if not m:
        raise ConfigError(f"{uri!r}: expected dataset://NAME or dataset://NAME@vN")
    return check_name(m.group(1)), int(m.group(2)) if m.group(2) else None


def _store(output_uri: str, endpoint_url: str | None = None) -> Any:
    return open_registry(output_uri, endpoint_url)


def versions(store: Any, name: str) -> list[int]:
    return adapter_versions(store, name, PREFIX)


def raw_sha256(source: str, endpoint_url: str | None = None) -> str:
    """sha256 of a data file, or over a folder's data files ('relpath sha256' lines)."""
    from kubetune_trainer.data.sources import SourceError, data_files, localize
    from kubetune_trainer.storage import sha256_file

    with tempfile.TemporaryDirectory(prefix="kubetune-ds-") as cache:
        try:
            path, display = localize(source, cache, endpoint_url)
            files = data_files(path, display)
        except SourceError as exc:
            raise BadDataError(str(exc), problems=[str(exc)]) from None
        if len(files) == 1 and path.is_file():
            return "sha256:" + sha256_file(path)
        h = hashlib.sha256()
        for file, shown in files:
            h.update(f"{shown.removeprefix(display).lstrip('/')} {sha256_file(file)}\n".encode())
        return "sha256:" + h.hexdigest()


def _probe_job(source: str, fmt: str, objective: str) -> FineTuneJob:
    """The smallest job that reads `source` as `fmt` (for the records fingerprint)."""
    return parse_job({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "dataset-probe", "namespace": "default"},
        "spec": {"model": {"base": "builtin:tiny-llama"}, "objective": objective,
                 "dataset": {"source": source, "format": fmt}},
    }, "<dataset register>", by_name=False)  # fmt: skip


def register(
    name: str, source: str, output_uri: str, fmt: str = "auto", objective: str = "sft",
    endpoint_url: str | None = None, now: datetime | None = None,
) -> Record:  # fmt: skip
    """Prepare `source` once (bad data fails here), then store the next version of `name`."""
    from kubetune_trainer.data import prepare

    check_name(name)
    if source.startswith(SCHEME):
        raise ConfigError(f"{source}: register the data itself, not another dataset:// name")
    if not is_remote(source):
        local = Path(source.removeprefix("file://")).expanduser()
        source = str(local.absolute())
    raw = raw_sha256(source, endpoint_url)
    prepared = prepare(_probe_job(source, fmt, objective))
    record = {
        "source": source, "format": prepared.format, "kind": prepared.kind,
        "objective": objective, "raw_sha256": raw, "records_fingerprint": prepared.fingerprint,
        "records": {"train": len(prepared.train), "validation": len(prepared.validation)},
    }  # fmt: skip
    store = _store(output_uri, endpoint_url)
    version = (versions(store, name) or [0])[-1] + 1
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    while True:
        full = {"name": name, "version": version, "created_at": created, **record}
        key, data = f"{PREFIX}/{name}/v{version}.json", _dump(full)
        if store.create_bytes(key, data) or store.get_bytes(key) == data:
            return full
        version += 1  # another registration took this number meanwhile


def get(output_uri: str, name: str, version: int | None = None,
        endpoint_url: str | None = None) -> Record:  # fmt: skip
    store = _store(output_uri, endpoint_url)
    known = versions(store, check_name(name))
    if not known:
        raise ConfigError(
            f"no dataset named {name!r} in {store.uri(PREFIX)}: register it with "
            f"`kubetune datasets register {name} SOURCE --output {output_uri}`"
        )
    version = version or known[-1]
    if version not in known:
        raise ConfigError(
            f"dataset {name} has no version {version} in {store.uri(PREFIX)}; versions: "
            + ", ".join(f"v{v}" for v in known)
        )
    return dict(json.loads(store.get_bytes(f"{PREFIX}/{name}/v{version}.json")))


def list_datasets(output_uri: str, endpoint_url: str | None = None) -> list[Record]:
    """The latest record of every dataset name, sorted by name."""
    store = _store(output_uri, endpoint_url)
    names = sorted({k.split("/")[1] for k in store.list(f"{PREFIX}/") if k.count("/") == 2})
    return [get(output_uri, n, None, endpoint_url) for n in names if versions(store, n)]


def resolve(uri: str, output_uri: str, endpoint_url: str | None = None) -> Record:
    """The record behind dataset://NAME[@vN], after checking its data is unchanged."""
    name, version = parse_dataset_ref(uri)
    record = get(output_uri, name, version, endpoint_url)
    now = raw_sha256(record["source"], endpoint_url)
    if now != record["raw_sha256"]:
        msg = (
            f"{uri}: the data at {record['source']} changed since dataset {name} "
            f"v{record['version']} was registered (sha256 {record['raw_sha256'][7:19]}..., "
            f"now {now[7:19]}...): register it again "
            f"(`kubetune datasets register {name} {record['source']}`) for a new version"
        )
        raise BadDataError(msg, problems=[msg])
    return record


def resolve_job(job: FineTuneJob, output_uri: str) -> tuple[FineTuneJob, FineTuneJob]:
    """(job with its dataset pinned to dataset://NAME@vN, job reading the registered data).

    A job whose source is not dataset:// comes back twice unchanged."""
    ds = job.spec.dataset
    if not ds.source.startswith(SCHEME):
        return job, job
    record = resolve(ds.source, output_uri, job.spec.output.s3_endpoint)
    pinned = job.model_copy(deep=True)
    pinned.spec.dataset.source = f"{SCHEME}{record['name']}@v{record['version']}"
    data = job.model_copy(deep=True)
    data.spec.dataset.source = record["source"]
    if ds.format == "auto":
        data.spec.dataset.format = record["format"]
    return pinned, data
