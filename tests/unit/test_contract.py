"""The Python contract matches the CRD: what one accepts the other accepts, patterns included.

Invalid values (one message each) are in test_spec_invalid.py; here: the valid side of the
new rules, the CRD's patterns against the models, and the operator's parse path.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune_api.constants import ConditionType, Phase, Reason
from kubetune_api.crd import build_crd
from kubetune_api.loader import InvalidSpecError, load_file, parse_job, parse_spec
from kubetune_operator.decide import Inputs, decide
from tests.support.spec_cases import BASE

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "0123456789abcdef" * 4


def with_(path: str, value: Any, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(doc or BASE)
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return doc


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def crd_errors(doc: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft4Validator(schema()).iter_errors(doc)]


# One valid value per field the CRD gives a pattern, with any settings it needs.
VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("metadata.name", "ok-job", {}),
    ("spec.model.revision", "v1.0", {}),
    ("spec.model.ggufFile", "SmolLM2-135M-Instruct.Q4_1.gguf", {}),
    ("spec.resources.gpuType", "NVIDIA-A100-SXM4-80GB", {}),
    ("spec.resources.cpu", "500m", {}),
    ("spec.resources.memory", "1.5Gi", {}),
    ("spec.resources.shmSize", "1e9", {}),
    ("spec.resources.priorityClassName", "high", {}),
    ("spec.resources.image", f"ghcr.io:443/org/kubetune-trainer:0.1.0@{DIGEST}", {}),
    ("spec.resources.serviceAccountName", "trainer", {}),
    ("spec.output.credentialsSecret", "s3-creds", {"spec.output.uri": "s3://bucket/x"}),
    ("spec.output.s3Endpoint", "http://minio:9000", {"spec.output.uri": "s3://bucket/x"}),
    ("spec.tracking.registerAs", "finance.qa_v2-lora", {"spec.tracking.mlflowUri": "http://m"}),
    ("spec.metrics.pushgatewayUrl", "https://pushgw.monitoring:9091", {}),
    ("spec.runPolicy.queueName", "team-a", {}),
    ("spec.dataset.trading.marketClose", "09:30", {"spec.dataset.format": "trading"}),
    ("spec.evaluation.selectBy", "rougeL", {}),
]


def _doc(path: str, value: Any, extra: dict[str, Any]) -> dict[str, Any]:
    doc = with_(path, value)
    for p, v in extra.items():
        doc = with_(p, v, doc)
    return doc


def _crd_node(path: str) -> dict[str, Any]:
    node = schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node


def test_every_patterned_crd_field_is_covered() -> None:
    found = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "pattern" in node:
            found.append(path.removeprefix("."))
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")

    walk(schema(), "")
    assert sorted(found) == sorted(p for p, _, _ in VALID)


@pytest.mark.parametrize(("path", "value", "extra"), VALID, ids=[v[0] for v in VALID])
def test_pattern_agrees_with_model_and_refuses_a_trailing_newline(
    path: str, value: str, extra: dict[str, Any]
) -> None:
    pattern = _crd_node(path)["pattern"]
    # Anchored, and in the syntax RE2 (the API server) and Python share: no lookaround,
    # no backreferences, no \Z, whose meaning differs between the engines.
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    assert not re.search(r"\(\?[=!<]|\\[0-9]|\\Z|\\A", pattern), pattern
    parse_job(_doc(path, value, extra))
    assert re.fullmatch(pattern[1:-1], value)
    assert not crd_errors(_doc(path, value, extra))
    # RE2's `$` is the very end of the text, so the CRD refuses a trailing newline: so do
    # the models (Python's re would accept it before `$`).
    assert not re.fullmatch(pattern[1:-1], value + "\n")
    with pytest.raises(InvalidSpecError) as info:
        parse_job(_doc(path, value + "\n", extra))
    assert info.value.errors[0].path == path, info.value.errors


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.resources.image", "not an image"),
        ("spec.resources.image", "repo@sha256:abc"),
        ("spec.tracking.registerAs", "../../x"),
        ("spec.tracking.registerAs", "a..b"),
        ("spec.resources.memory", "16 GB"),
        ("spec.resources.gpuType", "NVIDIA A100"),
        ("spec.output.credentialsSecret", "My_Secret"),
        ("metadata.name", "a" * 41),
        ("spec.training.seed", 2**32),
    ],
)
def test_crd_refuses_what_the_models_refuse(path: str, value: Any) -> None:
    extra = {"spec.tracking.mlflowUri": "http://m"} if "registerAs" in path else {}
    doc = _doc(path, value, extra)
    with pytest.raises(InvalidSpecError):
        parse_job(doc)
    assert crd_errors(doc), (path, value)


@pytest.mark.parametrize(
    "image",
    [
        "kubetune-trainer",
        "kubetune/trainer:0.1.0",
        "ghcr.io/org/kubetune-trainer:0.1.0",
        "localhost:5000/kubetune/trainer",
        f"ghcr.io/org/kubetune-trainer@{DIGEST}",
        f"registry.example.com/a/b/c:v1.2-rc_3@{DIGEST}",
    ],
)
def test_image_tags_and_digests_are_accepted(image: str) -> None:
    assert parse_job(with_("spec.resources.image", image)).spec.resources.image == image


def test_ints_are_valid_floats() -> None:
    job = parse_job(with_("spec.training", {"learningRate": 1, "epochs": 2}))
    assert job.spec.training.learning_rate == 1.0 and job.spec.training.epochs == 2.0


def test_what_kubectl_get_prints_validates() -> None:
    meta = {
        "name": "ok-job", "namespace": "team-a", "uid": "0b1c", "resourceVersion": "42",
        "generation": 3, "creationTimestamp": "2026-12-06T04:00:00Z",
        "labels": {"app.kubernetes.io/part-of": "kubetune", "team": ""},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
    }  # fmt: skip
    job = parse_job(with_("metadata", meta))
    assert job.metadata.namespace == "team-a"


def test_kubernetes_rules_accept_their_valid_forms() -> None:
    doc = with_("spec.resources", {
        "nodeSelector": {"node.kubernetes.io/instance-type": "p4d.24xlarge"},
        "tolerations": [{"operator": "Exists"},
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "spot", "value": "true", "effect": "NoExecute",
                         "tolerationSeconds": 60}],
        "cpu": "+.5", "memory": "512M",
    })  # fmt: skip
    res = parse_job(doc).spec.resources
    assert len(res.tolerations) == 3 and res.cpu == "+.5"


def test_python_code_may_still_build_models_by_field_name() -> None:
    from kubetune_api.spec_training import GenerationOptions

    assert GenerationOptions(max_new_tokens=8).max_new_tokens == 8
    job = parse_job(with_("spec.training", {"max_steps": 5}))  # a Python caller's dict
    assert job.spec.training.max_steps == 5


def test_snake_case_is_unknown_in_files_and_bodies(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_spec({**BASE["spec"], "training": {"max_steps": 5}}, "ok-job")
    assert [e.path for e in info.value.errors] == ["spec.training.max_steps"]
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(with_("spec.training", {"max_steps": 5})))
    errors = load_file(tmp_path / "job.yaml").errors
    assert [e.path for e in errors] == ["spec.training.max_steps"]


def _example_spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / "finance-qa.yaml").read_text())["spec"]


@pytest.mark.parametrize(
    ("section", "key", "value", "path"),
    [
        ("training", "maxSteps", "10", "spec.training.maxSteps"),
        ("adapter", "r", True, "spec.adapter.r"),
        ("training", "learning_rate", 0.1, "spec.training.learning_rate"),
        ("metrics", "port", 29500, "spec.metrics.port"),
    ],
)
def test_operator_marks_a_loose_body_invalid_naming_the_field(
    section: str, key: str, value: Any, path: str
) -> None:
    # The operator parses JSON bodies from the API server with the same strict models.
    spec = _example_spec()
    spec.setdefault(section, {})[key] = value
    plan = decide(
        Inputs(
            name="ok-job", namespace="team-a", generation=1, spec=spec, accepted_spec=None,
            status=None, observation=None, progress=None,
            now=datetime(2026, 12, 6, tzinfo=UTC),
        )
    )  # fmt: skip
    assert plan.job is None and plan.ensure_attempt is None
    assert plan.status.phase == Phase.FAILED
    cond = next(c for c in plan.status.conditions if c.type == ConditionType.FAILED)
    assert cond.reason == Reason.INVALID_SPEC
    assert path in cond.message, cond.message


def test_operator_accepts_the_same_body_when_typed_right() -> None:
    plan = decide(
        Inputs(
            name="ok-job", namespace="team-a", generation=1, spec=_example_spec(),
            accepted_spec=None, status=None, observation=None, progress=None,
            now=datetime(2026, 12, 6, tzinfo=UTC),
        )
    )  # fmt: skip
    assert plan.job is not None and plan.status.phase != Phase.FAILED


def test_a_quoted_number_says_how_to_fix_it() -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_job(with_("spec.training.maxSteps", "10"))
    assert "write the value without quotes" in info.value.errors[0].message


def test_namespace_override_reparses_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_trainer.commands._job import job_from_file

    monkeypatch.chdir(ROOT)
    # quickstart is not 4-bit: the re-parse must not see the 4-bit-only defaults.
    assert job_from_file("examples/quickstart.yaml", [], "other").metadata.namespace == "other"
    with pytest.raises(SystemExit) as info:
        job_from_file("examples/quickstart.yaml", [], "../../x")
    assert info.value.code == 64


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_the_resolved_manifest_parses_again_strictly(example: Path) -> None:
    # The operator's ConfigMap holds to_manifest() as JSON; the trainer parses it with the
    # same strict models, so every resolved value must be valid as written.
    import json

    job = load_file(example).jobs[0]
    again = parse_job(json.loads(json.dumps(job.to_manifest())), by_name=False)
    assert again.to_manifest() == job.to_manifest()
