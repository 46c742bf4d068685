"""The CRD is generated from the models, structural, committed, and agrees with examples."""

from __future__ import annotations

import json
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
    cols = [c["name"] for c in version["additionalPrinterColumns"]]
    assert cols == ["Phase", "Progress", "Loss", "Nodes", "Age"]


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


def test_defaults_in_schema_round_trip() -> None:
    # Every default the API server would fill in must itself be valid for the models.
    spec = schema()["properties"]["spec"]
    found = [(p, n["default"]) for p, n in _walk(spec, "spec") if "default" in n]
    assert len(found) > 40
    json.dumps(found)  # plain JSON values only
