"""The adapter registry on a local folder, on S3 (real moto server) and in MLflow."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubetune_api.loader import parse_job
from kubetune_trainer.cli import main
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.registry import (
    get,
    list_adapters,
    load_index,
    parse_ref,
    register,
    register_run,
)


def _job(output: str, **tracking: Any) -> Any:
    return parse_job({
        "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "fin-qa", "namespace": "team-a"},
        "spec": {"model": {"base": "builtin:tiny-llama", "revision": "abc123"},
                 "dataset": {"source": "data/train.jsonl", "format": "finance_qa"},
                 "training": {"learningRate": 0.001},
                 "output": {"uri": output}, "tracking": tracking},
    })  # fmt: skip


def _report(loss: float, sha: str = "ab" * 32) -> dict[str, Any]:
    """The shape the engine's run report has (kubetune_trainer.engine.finish._report)."""
    return {
        "base_model": "builtin:tiny-llama",
        "results": {"final_train_loss": loss, "tuned_eval_loss": loss + 0.1, "steps": 30,
                    "best_checkpoint": None},
        "adapter": {"uri": "s3://b/runs/team-a/fin-qa/adapter", "sha256": sha, "size": 1234,
                    "files": {"adapter_model.safetensors": 1234}},
        "data": {"format": "finance_qa", "kind": "sft", "fingerprint": "f" * 64},
        "hyperparameters": {"lora_r": 16, "learning_rate": 0.001},
        "training_seconds": 12.5,
        "evaluation": {"tuned": {"metrics": {"format_compliance": 0.75}}},
    }  # fmt: skip


def test_versions_count_up_and_records_hold_lineage(tmp_path: Path) -> None:
    out = str(tmp_path / "runs")
    job = _job(out)
    r1 = register_run(job, _report(1.5), run_uri=f"{out}/team-a/fin-qa")
    r2 = register_run(job, _report(0.9, "cd" * 32))
    assert (r1["name"], r1["version"], r2["version"]) == ("fin-qa", 1, 2)
    assert (tmp_path / "runs/registry/fin-qa/v1.json").is_file()
    rec = get(out, "fin-qa:1")
    assert rec == r1
    assert rec["base_model"] == "builtin:tiny-llama" and rec["base_revision"] == "abc123"
    assert rec["adapter_sha256"] == "ab" * 32 and rec["adapter_size"] == 1234
    assert rec["dataset_uri"] == "data/train.jsonl" and rec["dataset_fingerprint"] == "f" * 64
    assert rec["final_loss"] == 1.5 and rec["training_seconds"] == 12.5
    assert rec["metrics"]["tuned_eval_loss"] == pytest.approx(1.6)
    assert rec["metrics"]["eval/format_compliance"] == 0.75
    assert rec["spec"]["training"]["learningRate"] == 0.001
    assert rec["hyperparameters"]["lora_r"] == 16
    assert datetime.fromisoformat(rec["created_at"]).tzinfo == UTC
    assert get(out, "fin-qa")["version"] == 2  # latest
    index = json.loads((tmp_path / "runs/registry/index.json").read_text())
    assert index == {"fin-qa": {"latest": 2, "versions": [1, 2]}}


def _register_at_once(out: str, n: int) -> list[dict[str, Any]]:
    """n jobs register the same name at the same instant (they all see no version yet)."""
    start, got = threading.Barrier(n), [None] * n

    def one(i: int) -> None:
        start.wait()
        got[i] = register(out, "shared", {"final_loss": float(i)})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got  # type: ignore[return-value]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_simultaneous_registrations_each_get_their_own_version(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        request.getfixturevalue("s3_server")  # a real moto server: conditional PUT
    out = str(tmp_path / "runs") if where == "local" else "s3://kubetune-test/race"
    got = _register_at_once(out, 6)
    assert sorted(r["version"] for r in got) == [1, 2, 3, 4, 5, 6]
    for r in got:  # nobody's record was overwritten by another job's
        assert get(out, f"shared:{r['version']}")["final_loss"] == r["final_loss"]
    assert load_index(out)["shared"] == {"latest": 6, "versions": [1, 2, 3, 4, 5, 6]}


def test_index_rebuilt_from_version_files(tmp_path: Path) -> None:
    out = str(tmp_path / "runs")
    register_run(_job(out), _report(1.0))
    (tmp_path / "runs/registry/index.json").unlink()
    assert load_index(out) == {"fin-qa": {"latest": 1, "versions": [1]}}
    assert [r["name"] for r in list_adapters(out)] == ["fin-qa"]


def test_bad_refs() -> None:
    assert parse_ref("a-b_c.d") == ("a-b_c.d", None)
    assert parse_ref("x:v3") == ("x", 3)
    for bad in ("x:0", "x:latest", "../etc", ""):
        with pytest.raises(ConfigError):
            parse_ref(bad)


def test_cli_list_and_show(tmp_path: Path) -> None:
    out = str(tmp_path / "runs")
    job = _job(out)
    register_run(job, _report(1.25))
    register_run(job, _report(0.5))
    runner = CliRunner()
    res = runner.invoke(main, ["adapters", "list", "--output", out])
    assert res.exit_code == 0, res.output
    row = res.output.splitlines()[1].split()
    assert row[:3] == ["fin-qa", "v2", "2"] and "0.5000" in row
    res = runner.invoke(main, ["adapters", "list", "--output", out, "-o", "json"])
    assert res.exit_code == 0, res.output
    (listed,) = json.loads(res.stdout)["adapters"]
    assert (listed["name"], listed["version"], listed["final_loss"]) == ("fin-qa", 2, 0.5)
    old = runner.invoke(main, ["adapters", "list", "--output", out, "--json"])  # old spelling
    assert json.loads(old.stdout) == [listed]
    res = runner.invoke(main, ["adapters", "show", "fin-qa:1", "--output", out])
    assert res.exit_code == 0 and json.loads(res.output)["final_loss"] == 1.25
    res = runner.invoke(main, ["adapters", "show", "fin-qa:1", "--output", out, "-o", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["version"] == 1
    res = runner.invoke(main, ["adapters", "show", "fin-qa:7", "--output", out])
    assert res.exit_code == 1 and "versions: 1, 2" in res.output
    empty = runner.invoke(main, ["adapters", "list", "--output", str(tmp_path / "none")])
    assert "no adapters registered" in empty.output


@pytest.mark.services
def test_registry_on_s3(s3_server: Any) -> None:
    out = "s3://kubetune-test/runs"
    register_run(_job(out), _report(1.0))
    register_run(_job(out), _report(0.8))
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket="kubetune-test", Prefix="runs/registry/")["Contents"])  # fmt: skip
    assert keys == ["runs/registry/fin-qa/v1.json", "runs/registry/fin-qa/v2.json",
                    "runs/registry/index.json"]  # fmt: skip
    assert get(out, "fin-qa")["final_loss"] == 0.8


def _lineage(rec: dict[str, Any]) -> dict[str, str]:
    """The tags a model version must carry for `rec` (registry field -> str)."""
    keys = ("adapter_uri", "adapter_sha256", "adapter_size", "base_model", "base_revision",
            "dataset_uri", "dataset_format", "dataset_fingerprint", "objective")  # fmt: skip
    tags = {k: str(rec[k]) for k in keys if rec[k] is not None}
    return {**tags, "job": f"{rec['job']['namespace']}/{rec['job']['name']}",
            "registry_version": str(rec["version"])}  # fmt: skip


@pytest.mark.services
def test_mlflow_model_registry(tmp_path: Path, mlflow_server: Any) -> None:
    from mlflow.tracking import MlflowClient

    job = _job(str(tmp_path / "runs"), mlflowUri=mlflow_server.uri, registerAs="fin-qa-adapter")
    r1 = register_run(job, _report(1.0))
    r2 = register_run(job, _report(0.7, "cd" * 32))
    assert r1["name"] == "fin-qa-adapter" and r2["version"] == 2
    assert r2["mlflow"]["version"] == r1["mlflow"]["version"] + 1
    mv = MlflowClient(mlflow_server.uri).get_model_version(
        "fin-qa-adapter", str(r2["mlflow"]["version"])
    )
    assert mv.source == "s3://b/runs/team-a/fin-qa/adapter"
    assert mv.tags == _lineage(r2)
    assert mv.tags["adapter_sha256"] == "cd" * 32 and mv.tags["adapter_size"] == "1234"
    assert mv.tags["base_revision"] == "abc123" and mv.tags["dataset_fingerprint"] == "f" * 64


@pytest.mark.services
def test_tracking_alone_registers_under_the_job_name(tmp_path: Path, mlflow_server: Any) -> None:
    from mlflow.tracking import MlflowClient

    parsed = _job(str(tmp_path / "runs"), mlflowUri=mlflow_server.uri)  # no registerAs
    job = parsed.model_copy(update={"metadata": parsed.metadata.model_copy(
        update={"name": "tracked-only"})})  # fmt: skip
    rec = register_run(job, _report(1.0))
    assert rec["name"] == "tracked-only" and rec["mlflow"]["name"] == "tracked-only"
    mv = MlflowClient(mlflow_server.uri).get_model_version("tracked-only", "1")
    assert mv.source == rec["adapter_uri"] and mv.tags == _lineage(rec)


def test_mlflow_outage_still_stores_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.net import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    down = f"http://user:secret@127.0.0.1:{free_port()}"
    out = str(tmp_path / "runs")
    rec = register_run(_job(out, mlflowUri=down), _report(1.0))
    assert get(out, "fin-qa") == rec and rec["adapter_sha256"] == "ab" * 32
    assert rec["mlflow"]["tracking_uri"] == down.replace("user:secret@", "***@")
    assert "version" not in rec["mlflow"] and rec["mlflow"]["error"]
    assert "secret" not in json.dumps(rec)


def test_objective_options_and_hub_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub

    from kubetune_trainer.registry import build_record

    def job(objective: str, fmt: str, model: dict[str, Any], **training: Any) -> Any:
        return parse_job({
            "apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": "j", "namespace": "ns"},
            "spec": {"objective": objective, "model": model, "training": training,
                     "dataset": {"source": "d.jsonl", "format": fmt}},
        })  # fmt: skip

    report = {"hyperparameters": {"lora_r": 8}}
    hp = build_record(
        job(
            "dpo",
            "preference",
            {"base": "builtin:tiny-llama"},
            dpo={"beta": 0.3, "lossType": "robust"},
        ),
        report,
    )["hyperparameters"]
    assert hp == {"lora_r": 8, "dpo_beta": 0.3, "dpo_loss_type": "robust",
                  "dpo_label_smoothing": 0.1}  # fmt: skip
    hp = build_record(
        job("ranking", "ranked", {"base": "builtin:tiny-llama"}, ranking={"margin": 0.7}), report
    )["hyperparameters"]
    assert hp == {"lora_r": 8, "ranking_margin": 0.7}
    # A hub base without a pinned revision: the commit the local hub cache resolves main
    # to (the layout huggingface_hub writes: refs/main -> snapshots/<commit>/).
    commit, other = "0123456789abcdef0123456789abcdef01234567", "f" * 40
    repo = tmp_path / "hub" / "models--org--tiny"
    for c in (commit, other):
        (repo / "snapshots" / c).mkdir(parents=True)
        (repo / "snapshots" / c / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "refs" / "v2").write_text(other)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sft = lambda **m: build_record(job("sft", "qa", {"base": "org/tiny", **m}), report)  # noqa: E731
    assert sft()["base_revision"] == commit
    assert sft(revision="v2")["base_revision"] == other  # a tag, recorded as its commit
    assert sft(revision="b" * 40)["base_revision"] == "b" * 40  # pinned: as given
    assert build_record(job("sft", "qa", {"base": "org/absent"}), report)["base_revision"] is None


@pytest.mark.services
def test_reuses_the_version_the_tracking_sink_registered(
    tmp_path: Path, mlflow_server: Any
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    name = "sink-registered"
    exp = client.create_experiment("registry-reuse")
    run_id = client.create_run(exp).info.run_id
    client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/adapter"  # as the sink does
    sink_version = client.create_model_version(name, source, run_id=run_id).version
    # Where the MLflow sink leaves its run id under the run prefix.
    run_dir = tmp_path / "runs" / "team-a" / "fin-qa"
    (run_dir / "tracking").mkdir(parents=True)
    (run_dir / "tracking" / "mlflow-run.json").write_text(json.dumps({"run_id": run_id}))

    job = _job(str(tmp_path / "runs"), mlflowUri=mlflow_server.uri, registerAs=name)
    rec = register_run(job, _report(0.5), run_uri=str(run_dir))
    assert rec["mlflow"] == {"tracking_uri": mlflow_server.uri, "name": name,
                             "version": int(sink_version), "run_id": run_id}  # fmt: skip
    assert len(client.search_model_versions(f"name='{name}'")) == 1  # no duplicate
    # The sink's version now carries the record's lineage.
    assert client.get_model_version(name, sink_version).tags == _lineage(rec)


@pytest.mark.services
@pytest.mark.slow
def test_record_of_a_real_engine_run(
    tmp_path: Path, trainer_env: None, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every field of the record a real (tiny DPO) run writes, from the run itself; the
    run's tracking sink registered the adapter under the job's name (no registerAs), and
    that model version carries the same lineage."""
    import hashlib

    from mlflow.tracking import MlflowClient

    from kubetune_trainer.data.prepare import prepare
    from kubetune_trainer.engine.main import execute
    from tests.support.trainer.preference import SUFFIXES, pairs, preference_job, tiny_base

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # not left to the sink's
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")  # setdefault, past this test
    base = tiny_base()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pairs(12, 1, *SUFFIXES[:2])))
    out = tmp_path / "runs"
    job = preference_job(str(out), "dpo", name="reg-dpo", model={"base": base},
                   dataset={"source": str(data), "validation": {"fraction": 0.25}},
                   training={"maxSteps": 2, "learningRate": 0.005,
                             "dpo": {"beta": 0.2, "lossType": "hinge"}},
                   tracking={"mlflowUri": mlflow_server.uri,
                             "experiment": "registry-run"})  # fmt: skip
    code, res = execute(job, say=lambda s: None)
    assert code == 0 and res is not None and res.adapter is not None
    rec = json.loads((out / "registry" / "reg-dpo" / "v1.json").read_text())
    assert set(rec) == {
        "name", "version", "created_at", "base_model", "base_revision", "adapter_uri",
        "adapter_sha256", "adapter_size", "dataset_uri", "dataset_format",
        "dataset_fingerprint", "objective", "job", "run_uri", "spec", "metrics", "final_loss",
        "training_seconds", "hyperparameters", "mlflow",
    }  # fmt: skip
    assert (rec["name"], rec["version"]) == ("reg-dpo", 1)
    assert datetime.fromisoformat(rec["created_at"]).tzinfo == UTC
    assert rec["base_model"] == base and rec["base_revision"] is None  # a local folder
    weights = (Path(rec["adapter_uri"]) / "adapter_model.safetensors").read_bytes()
    assert rec["adapter_uri"] == res.adapter.uri == f"{res.run_uri}/adapter"
    assert rec["adapter_sha256"] == hashlib.sha256(weights).hexdigest()
    assert rec["adapter_size"] == len(weights)
    assert rec["dataset_uri"] == str(data) and rec["dataset_format"] == "preference"
    fingerprint = prepare(job).fingerprint
    assert rec["dataset_fingerprint"] == fingerprint and fingerprint.startswith("sha256:")
    assert rec["objective"] == "dpo" and rec["job"] == {"namespace": "test", "name": "reg-dpo"}
    assert rec["run_uri"] == res.run_uri and rec["spec"] == job.to_manifest()["spec"]
    assert rec["metrics"]["steps"] == 2
    assert rec["metrics"]["tuned_eval_loss"] == pytest.approx(res.tuned_eval_loss)
    assert rec["final_loss"] == pytest.approx(res.final_train_loss)
    assert rec["training_seconds"] == res.report["training_seconds"] > 0
    hp = rec["hyperparameters"]
    assert (hp["lora_r"], hp["lora_alpha"], hp["learning_rate"], hp["max_steps"]) == (
        8, 16, 0.005, 2)  # fmt: skip
    assert (hp["dpo_beta"], hp["dpo_loss_type"]) == (0.2, "hinge")
    run_id = json.loads((Path(res.run_uri) / "tracking" / "mlflow-run.json").read_text())["run_id"]
    assert rec["mlflow"] == {"tracking_uri": mlflow_server.uri, "name": "reg-dpo",
                             "version": 1, "run_id": run_id}  # fmt: skip
    client = MlflowClient(mlflow_server.uri)
    (mv,) = client.search_model_versions("name='reg-dpo'")  # the sink's, not a second one
    assert mv.run_id == run_id and mv.source.endswith("/adapter")
    assert mv.tags == {**_lineage(rec), "kubetune.adapter_uri": rec["adapter_uri"]}
