"""Generate the FineTuneJob CustomResourceDefinition from the pydantic models.

Kubernetes wants a *structural* schema: no $ref, every node typed, OpenAPI v3.0
keywords (boolean exclusiveMinimum, no const/examples), optional fields simply
absent from `required`. This module rewrites pydantic's JSON Schema into that.
"""

from __future__ import annotations

from typing import Any

import yaml

from . import constants as c
from .crd_rules import add_validations, object_validations
from .kube_names import DNS1035_LABEL, anchored
from .rules import MAX_NAME_LENGTH
from .spec import FineTuneJobSpec
from .status import FineTuneJobStatus

# Spec sections that may change while a job exists; all others are immutable.
MUTABLE_SPEC_FIELDS = ("runPolicy",)

_DROP = {"title", "examples"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return _structural(out)


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    # Optional[X] -> X: absence from `required` is how Kubernetes says optional.
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            rest.pop("default")
        if len(branches) == 1:
            return {**branches[0], **rest}
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node[bound], bool):
            node["minimum" if bound == "exclusiveMinimum" else "maximum"] = node[bound]
            node[bound] = True
    if node.get("additionalProperties") is False:
        # Not allowed beside `properties`; the API server prunes unknown fields instead.
        node.pop("additionalProperties")
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("default", 0) is None:
        node.pop("default")
    return node


def openapi_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")  # type: ignore[attr-defined]
    return _resolve(raw, raw.get("$defs", {}))


def metadata_schema() -> dict[str, Any]:
    """A CRD may restrict only metadata.name: the limit child object names need."""
    return {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": MAX_NAME_LENGTH,
                "pattern": anchored(DNS1035_LABEL),
            }
        },
    }


def spec_schema() -> dict[str, Any]:
    return add_validations(openapi_schema(FineTuneJobSpec), MUTABLE_SPEC_FIELDS)


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": c.CRD_NAME,
            "labels": {c.LABEL_NAME: "kubetune", "app.kubernetes.io/part-of": "kubetune"},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": c.KIND,
                "plural": c.PLURAL,
                "singular": c.SINGULAR,
                "shortNames": list(c.SHORT_NAMES),
                "listKind": f"{c.KIND}List",
                "categories": ["kubetune"],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Progress",
                            "type": "string",
                            "jsonPath": ".status.progress.display",
                        },
                        {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
                        {"name": "ETA", "type": "string", "jsonPath": ".status.progress.eta"},
                        {"name": "Nodes", "type": "integer", "jsonPath": ".spec.distributed.nodes"},
                        # -o wide only (priority 1):
                        {
                            "name": "Restarts",
                            "type": "integer",
                            "priority": 1,
                            "jsonPath": ".status.restarts",
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A LoRA/QLoRA/DPO fine-tuning job.",
                            "required": ["spec"],
                            "x-kubernetes-validations": object_validations(),
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": metadata_schema(),
                                "spec": spec_schema(),
                                "status": openapi_schema(FineTuneJobStatus),
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# GENERATED by `make crd` from kubetune_api: do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
