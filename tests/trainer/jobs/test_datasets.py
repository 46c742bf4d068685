"""Datasets by ID: `kubetune datasets register` records source, format and fingerprints;
`dataset.source: dataset://NAME[@vN]` resolves through it; the adapter registry's lineage
names the version; data changed under a registered version is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kubetune_api.constants import ExitCode
from kubetune_api.loader import InvalidSpecError, parse_job
from kubetune_trainer import dataset_registry as dsr
from kubetune_trainer.errors import BadDataError, ConfigError
from tests.support.trainer.local_jobs import cli, job_doc, write_data


def _job(source: str, name: str = "by-id") -> object:
    doc = job_doc(name, steps=2, save=2)
    doc["spec"]["dataset"]["source"] = source
    doc["spec"]["dataset"]["format"] = "auto"
    return parse_job(doc)


def test_register_list_show_version_by_version(home: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "colors.jsonl", 40)
    got = cli("datasets", "register", "colors", str(data), "--output", "runs", "-o", "json")
    assert got.returncode == 0, got.stderr
    v1 = json.loads(got.stdout)
    assert (v1["name"], v1["version"], v1["format"], v1["kind"]) == ("colors", 1, "qa", "sft")
    assert v1["source"] == str(data)
    assert v1["raw_sha256"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert v1["records_fingerprint"].startswith("sha256:")
    assert sum(v1["records"].values()) == 40
    assert (tmp_path / "runs" / "registry" / "_datasets" / "colors" / "v1.json").is_file()

    write_data(data, 48)  # new data -> a new version; v1 stays as it was
    v2 = json.loads(cli("datasets", "register", "colors", str(data), "--output", "runs",
                        "--format", "qa", "-o", "json").stdout)  # fmt: skip
    assert v2["version"] == 2 and v2["raw_sha256"] != v1["raw_sha256"]
    listed = json.loads(cli("datasets", "list", "--output", "runs", "-o", "json").stdout)
    assert [(r["name"], r["version"]) for r in listed] == [("colors", 2)]
    shown = json.loads(
        cli("datasets", "show", "colors@v1", "--output", "runs", "-o", "json").stdout
    )
    assert shown == v1
    assert "dataset://colors@v2" in cli("datasets", "show", "colors", "--output", "runs").stdout
    # The adapter listing is not confused by the dataset records beside it.
    assert "no adapters registered" in cli("adapters", "list", "--output", "runs").stdout


def test_bad_names_sources_and_unknown_datasets_are_refused(home: Path, tmp_path: Path) -> None:
    got = cli("datasets", "register", "colors", str(tmp_path / "missing.jsonl"), "--output", "runs")
    assert got.returncode == ExitCode.BAD_DATA and "no such file" in got.stderr
    got = cli("datasets", "show", "nothing", "--output", "runs")
    assert got.returncode == ExitCode.INVALID_SPEC and "no dataset named 'nothing'" in got.stderr
    assert "Traceback" not in got.stderr
    for bad in ("dataset://../x", "dataset://x@v0", "dataset://x@latest", "datasets://x"):
        with pytest.raises(InvalidSpecError, match=r"dataset\.source"):
            _job(bad)
    assert _job("dataset://colors@v2").spec.dataset.source == "dataset://colors@v2"


def test_a_changed_file_under_the_same_version_is_refused(home: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "colors.jsonl", 40)
    dsr.register("colors", str(data), "runs")
    pinned, reading = dsr.resolve_job(_job("dataset://colors"), "runs")
    assert pinned.spec.dataset.source == "dataset://colors@v1"
    assert (reading.spec.dataset.source, reading.spec.dataset.format) == (str(data), "qa")
    with data.open("a") as f:  # one more row, same name and version
        f.write(json.dumps({"question": "What color is the sun?", "answer": "Gold."}) + "\n")
    with pytest.raises(BadDataError, match=r"changed since dataset colors v1 was registered"):
        dsr.resolve_job(_job("dataset://colors@v1"), "runs")
    with pytest.raises(ConfigError, match="has no version 3"):
        dsr.resolve("dataset://colors@v3", "runs")


@pytest.mark.slow
def test_a_run_reads_the_registered_data_and_its_lineage_names_the_version(
    home: Path, tmp_path: Path
) -> None:
    from kubetune_trainer.engine.main import execute
    from kubetune_trainer.registry import get

    data = write_data(tmp_path / "colors.jsonl", 40)
    assert dsr.register("colors", str(data), "runs")["version"] == 1
    code, result = execute(_job("dataset://colors"), say=lambda s: None)
    assert code == 0 and result is not None
    adapter = get("runs", "by-id")
    assert adapter["dataset_uri"] == "dataset://colors@v1"
    assert adapter["dataset_format"] == "qa"
    assert adapter["spec"]["dataset"]["source"] == "dataset://colors@v1"
    assert adapter["dataset_fingerprint"].startswith("sha256:")

    data.write_text(data.read_text().replace("red", "crimson"))
    code, _ = execute(_job("dataset://colors", name="after-edit"), say=lambda s: None)
    assert code == ExitCode.BAD_DATA
    assert not (tmp_path / "runs" / "test" / "after-edit" / "adapter").exists()


def test_submit_refuses_an_unknown_or_changed_dataset_before_queueing(
    home: Path, tmp_path: Path
) -> None:
    from kubetune_trainer.jobs.local import LocalBackend

    data = write_data(tmp_path / "colors.jsonl", 40)
    dsr.register("colors", str(data), "runs")
    job = tmp_path / "job.yaml"
    doc = job_doc("by-id")
    doc["spec"]["dataset"]["source"] = "dataset://colours"
    job.write_text(json.dumps(doc))
    got = cli("submit", str(job))
    assert got.returncode == ExitCode.INVALID_SPEC and "no dataset named 'colours'" in got.stderr
    data.write_text(data.read_text().replace("red", "crimson"))
    doc["spec"]["dataset"]["source"] = "dataset://colors@v1"
    job.write_text(json.dumps(doc))
    got = cli("submit", str(job))
    assert got.returncode == ExitCode.INVALID_SPEC
    assert "changed since dataset colors v1" in got.stderr
    assert LocalBackend().list() == []


def test_prepare_reads_a_registered_dataset(home: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "colors.jsonl", 40)
    dsr.register("colors", str(data), "runs")
    job = tmp_path / "job.yaml"
    doc = job_doc("by-id")
    doc["spec"]["dataset"].update(source="dataset://colors@v1", format="auto")
    job.write_text(json.dumps(doc))
    got = cli("prepare", str(job), "--out", str(tmp_path / "prepared"))
    assert got.returncode == 0, got.stderr
    assert "format: qa -> sft records" in got.stdout and "kept: 40 examples" in got.stdout
    data.write_text(data.read_text().replace("red", "crimson"))
    got = cli("prepare", str(job), "--out", str(tmp_path / "prepared"))
    assert got.returncode == ExitCode.BAD_DATA and "changed since dataset colors v1" in got.stderr
