"""The CRD is generated from the models, structural, committed, and agrees with examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune_api.crd import build_crd, crd_yaml
from kubetune_api.loader import read_documents

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "finetunejobs.kubetune.io.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_committed_crd_matches_models() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ drifted from kubetune_api: run `make crd`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, child in node.get("properties", {}).items():
            out += _walk(child, f"{path}.{key}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural() -> None:
    forbidden = {"$ref", "anyOf", "oneOf", "allOf", "const", "title", "examples", "$defs"}
    for path, node in _walk(schema()):
        assert not forbidden & node.keys(), f"{path}: {forbidden & node.keys()}"
        typed = "type" in node or node.get("x-kubernetes-preserve-unknown-fields")
        assert typed, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_spec_field_is_described() -> None:
    spec = schema()["properties"]["spec"]
    for path, node in _walk(spec, "spec"):
        if path != "spec" and not path.endswith("[]") and not path.endswith("}"):
            assert node.get("description"), f"{path} has no description"


def test_crd_identity_and_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "finetunejobs.kubetune.io"
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "FineTuneJob", "finetunejobs", ["ftj"])  # fmt: skip
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    cols = {c["name"]: (c["jsonPath"], c.get("priority", 0))
            for c in version["additionalPrinterColumns"]}  # fmt: skip
    assert cols == {
        "Phase": (".status.phase", 0),
        "Progress": (".status.progress.display", 0),
        "Loss": (".status.progress.loss", 0),
        "ETA": (".status.progress.eta", 0),
        "Nodes": (".spec.distributed.nodes", 0),
        "Restarts": (".status.restarts", 1),  # priority 1: -o wide only
        "Reason": ('.status.conditions[?(@.type=="Ready")].reason', 1),
        "Age": (".metadata.creationTimestamp", 0),
    }
    assert list(cols)[-1] == "Age"


def test_conditions_are_metav1_conditions_in_a_map_keyed_by_type() -> None:
    conditions = schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    # metav1.Condition: five required fields (a map key must be required), observedGeneration.
    assert sorted(item["required"]) == ["lastTransitionTime", "message", "reason", "status", "type"]
    assert set(item["properties"]) == set(item["required"]) | {"observedGeneration"}
    assert item["properties"]["observedGeneration"]["minimum"] == 0
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    props = item["properties"]
    assert (props["reason"]["maxLength"], props["message"]["maxLength"]) == (1024, 32768)
    validator = jsonschema.Draft4Validator(item)
    good = {"type": "Ready", "status": "True", "reason": "Completed", "message": "",
            "lastTransitionTime": "2026-11-22T01:00:00Z", "observedGeneration": 3}  # fmt: skip
    assert not list(validator.iter_errors(good))
    for bad in ({"reason": "not a reason"}, {"type": "two words"}, {"status": "Maybe"}):
        assert list(validator.iter_errors({**good, **bad})), bad
    for key in item["required"]:
        assert list(validator.iter_errors({k: v for k, v in good.items() if k != key})), key


def test_every_reason_and_condition_type_is_a_valid_metav1_value() -> None:
    """A reason the API server refuses would make every status write of that job fail."""
    import re

    from kubetune_api.constants import ConditionType, Reason
    from kubetune_api.status import CONDITION_REASON_PATTERN, CONDITION_TYPE_PATTERN

    for cls, pattern in (
        (Reason, CONDITION_REASON_PATTERN),
        (ConditionType, CONDITION_TYPE_PATTERN),
    ):
        values = [v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)]
        assert len(values) > 8
        for value in values:
            assert re.match(pattern, value), (cls.__name__, value)


def test_immutable_fields_marked_but_run_policy_mutable() -> None:
    props = schema()["properties"]["spec"]["properties"]
    assert props["model"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert "x-kubernetes-validations" not in props["runPolicy"]


def _openapi_validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 keeps draft-4 semantics (boolean exclusiveMinimum); x-* keys are ignored.
    return jsonschema.Draft4Validator(schema())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_valid_against_models_and_crd_schema(path: Path) -> None:
    from kubetune_api.loader import load_file

    result = load_file(path)
    assert not result.errors, [str(e) for e in result.errors]
    for doc in read_documents(path):
        errors = [e.message for e in _openapi_validator().iter_errors(doc)]
        assert not errors, errors


def test_crd_schema_rejects_what_models_reject() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "finance-qa.yaml").read_text())
    doc["spec"]["adapter"]["r"] = 0
    doc["spec"]["quantization"]["mode"] = "3bit"
    doc["spec"]["training"]["learningRate"] = 0
    messages = " ".join(e.message for e in _openapi_validator().iter_errors(doc))
    assert "'3bit' is not one of" in messages
    assert "less than the minimum of 1" in messages
    assert "less than or equal to the minimum of 0" in messages


def test_every_schema_default_satisfies_its_own_node() -> None:
    # The API server fills these in; a default outside its own enum/range would make
    # every object that omits the field invalid.
    spec = schema()["properties"]["spec"]
    found = [(p, n) for p, n in _walk(spec, "spec") if "default" in n]
    assert len(found) > 40
    for path, node in found:
        rules = {k: v for k, v in node.items() if k not in ("default", "properties", "required")}
        errors = [e.message for e in jsonschema.Draft4Validator(rules).iter_errors(node["default"])]
        assert not errors, (path, errors)


def test_schema_defaults_equal_model_defaults() -> None:
    # One definition: what the CRD fills in is what the pydantic model would use.
    from kubetune_api.spec import FineTuneJobSpec

    resolved = FineTuneJobSpec.model_validate(
        {"model": {"base": "x/y"}, "dataset": {"source": "d.jsonl"}}
    ).model_dump(by_alias=True, mode="json")
    spec = schema()["properties"]["spec"]
    checked = 0
    for path, node in _walk(spec, "spec"):
        if "default" not in node or "[]" in path or "{" in path:
            continue
        value: Any = resolved
        for key in path.split(".")[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            assert value == node["default"], path
            checked += 1
    assert checked > 30
