"""The chart's `trainerDefaults` values: rendered into the ConfigMap the operator reads at start
(read back here with the operator's own parser and loader), restarting it on change, checked by
the values schema; and the trainer Job the operator builds from them is a valid Kubernetes
object (kubernetes-validate, strict)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_api.loader import parse_job
from kubetune_api.trainer_defaults import TrainerDefaults, parse_trainer_defaults
from kubetune_operator import builders as b
from kubetune_operator.__main__ import operator_config, parse_args
from tests.support.chart.helpers import (
    CHART,
    RELEASE,
    SCENARIOS,
    Manifests,
    args_of,
    one,
    run,
    scenario_id,
    validate,
)

Render = Callable[..., Manifests]
GPU_CLUSTER = CHART / "ci" / "gpu-cluster-values.yaml"
REPO = CHART.parents[1]


def configmap(manifests: Manifests) -> dict[str, Any]:
    (cm,) = [m for m in manifests if m["metadata"]["name"].endswith("-trainer-defaults")]
    return cm


def read_by_the_operator(manifests: Manifests, tmp_path: Path) -> TrainerDefaults:
    """Mount the ConfigMap where the Deployment does, and start-up-check it as main() does."""
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    args = parse_args(args_of(deployment))
    path = Path(args.trainer_defaults)
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "trainer-defaults"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "trainer-defaults"]
    assert mount == {"name": "trainer-defaults", "mountPath": str(path.parent), "readOnly": True}
    cm = configmap(manifests)
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    local = tmp_path / path.name
    local.write_text(cm["data"][path.name])
    args.trainer_defaults = str(local)
    return operator_config(args).trainer_defaults


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_every_scenario_gives_the_operator_valid_defaults(
    render: Render, tmp_path: Path, values: Path | None
) -> None:
    defaults = read_by_the_operator(render(values), tmp_path)
    if values is None:
        assert defaults == TrainerDefaults()


def test_gpu_cluster_values_reach_the_operator_exactly(render: Render, tmp_path: Path) -> None:
    defaults = read_by_the_operator(render(GPU_CLUSTER), tmp_path)
    values = yaml.safe_load(GPU_CLUSTER.read_text())["trainerDefaults"]
    assert defaults == parse_trainer_defaults(values)
    assert defaults.gpu_resource_name == "nvidia.com/mig-3g.40gb"
    assert defaults.cache is not None and defaults.cache.persistent_volume_claim is not None
    assert defaults.cache.persistent_volume_claim.claim_name == "kubetune-cache"


def test_set_values_reach_the_operator(render: Render, tmp_path: Path) -> None:
    manifests = render(
        None,
        "trainerDefaults.gpuResourceName=amd.com/gpu",
        "trainerDefaults.env[0].name=NCCL_DEBUG",
        "trainerDefaults.env[0].value=WARN",
        "trainerDefaults.cache.persistentVolumeClaim.claimName=cache",
    )
    defaults = read_by_the_operator(manifests, tmp_path)
    assert defaults.gpu_resource_name == "amd.com/gpu"
    assert [(v.name, v.value) for v in defaults.env] == [("NCCL_DEBUG", "WARN")]


def test_a_change_restarts_the_operator(render: Render) -> None:
    def checksum(*sets: str) -> str:
        annotations = one(render(None, *sets), "Deployment")["spec"]["template"]["metadata"]
        return annotations["annotations"]["checksum/trainer-defaults"]

    assert checksum() == checksum()
    assert checksum() != checksum("trainerDefaults.priorityClassName=batch")


def test_a_bad_value_stops_the_operator_naming_it(
    render: Render, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Shapes pass the schema; the operator's own checks refuse it at start, naming the field.
    manifests = render(None, "trainerDefaults.volumeMounts[0].name=x",
                       "trainerDefaults.volumeMounts[0].mountPath=/tmp")  # fmt: skip
    with pytest.raises(SystemExit):
        read_by_the_operator(manifests, tmp_path)
    assert "volumeMounts[0].mountPath: mountPath '/tmp' would hide /tmp" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        "trainerDefaults.image=x",  # the image is trainer.image
        "trainerDefaults.imagePullPolicy=Sometimes",
        "trainerDefaults.serviceAccountName=Not_A_Name",
        "trainerDefaults.gpuResourceName=gpu",
        "trainerDefaults.volumeMounts[0].name=x",  # no mountPath
    ],
)
def test_schema_rejects_malformed_trainer_defaults(helm: str, bad: str) -> None:
    proc = run([helm, "template", RELEASE, str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower(), proc.stderr


def test_schema_knows_exactly_the_operator_fields() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = set(schema["properties"]["trainerDefaults"]["properties"])
    fields = {f.alias or n for n, f in TrainerDefaults.model_fields.items()}
    assert keys == fields
    assert set(yaml.safe_load((CHART / "values.yaml").read_text())["trainerDefaults"]) == fields


def test_the_trainer_job_built_from_the_gpu_cluster_values_is_valid(
    kubernetes_validate: str, tmp_path: Path
) -> None:
    defaults = parse_trainer_defaults(yaml.safe_load(GPU_CLUSTER.read_text())["trainerDefaults"])
    doc = yaml.safe_load((REPO / "tests/operator/ftj-basic.yaml").read_text())
    doc["spec"]["pod"] = {
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}],
        "envFrom": [{"secretRef": {"name": "wandb"}, "prefix": "WANDB_"}],
        "labels": {"team": "nlp"},
        "annotations": {"example.com/owner": "ada"},
    }
    owner = b.Owner(name="llama-lora", namespace="team-a", uid="uid-1")
    job = b.build_job(parse_job(doc), owner, 1, defaults=defaults)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    proc = validate(kubernetes_validate, path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed for resource job/llama-lora-a1" in proc.stdout
