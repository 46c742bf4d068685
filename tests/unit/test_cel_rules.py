"""The CRD's CEL rules and the Python rules are one table (kubetune_api.rules): the API server
refuses what `kubetune validate` refuses, at the same field path, with the same message.

The CEL is evaluated with cel-python (RE2, like the API server) on the object as the API
server would hold it (schema defaults filled in) and as written.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from kubetune_api.crd_rules import section_model, validation
from kubetune_api.errors import _model_in
from kubetune_api.rules import NAME_RULE, PLACEHOLDER, RULES, Rule
from kubetune_api.spec import FineTuneJobSpec
from kubetune_api.spec_data import FORMATS_FOR_OBJECTIVE, DatasetFormat, format_fields
from tests.support.cel import (
    ABSENT,
    api_server_errors,
    check_rule,
    job,
    python_errors,
    root_schema,
    with_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

# One spec per rule that breaks that rule and no other (a new rule needs one here).
INVALID: dict[str, dict[str, Any]] = {
    "num-labels-required": {"model.task": "sequence_classification"},
    "num-labels-only-for-classification": {"model.numLabels": 3},
    "4bit-only-options": {"quantization.mode": "8bit", "quantization.quantType": "fp4"},
    "trading-options-need-format": {"dataset.trading": {"window": 10}},
    "papers-options-need-format": {"dataset.papers": {}},
    "rated-options-need-format": {"dataset.rated": {"minRating": 3.0}},
    "field-map-keys": {"dataset.fieldMap": {"Q": "question", "answer": "A"}},
    "warmup-steps-or-ratio": {"training.warmupSteps": 10, "training.warmupRatio": 0.1},
    "early-stopping-needs-eval-steps": {"training.earlyStopping": {"patience": 2}},
    "early-stopping-save-on-eval": {
        "training.earlyStopping": {"patience": 2},
        "training.evalSteps": 20,
        "training.saveSteps": 30,
    },
    "cpu-offload-needs-deepspeed": {"distributed.cpuOffload": True},
    "credentials-need-s3": {"output.credentialsSecret": "creds"},
    "endpoint-needs-s3": {"output.s3Endpoint": "http://minio:9000"},
    "register-needs-mlflow": {"tracking.registerAs": "my-adapter"},
    "format-for-sft": {"dataset.format": "preference"},
    "format-for-dpo": {"objective": "dpo"},
    "format-for-ranking": {"objective": "ranking", "dataset.format": "rated"},
    "objective-needs-causal-lm": {
        "objective": "dpo",
        "dataset.format": "preference",
        "model.task": "sequence_classification",
        "model.numLabels": 2,
    },
    "one-process-per-gpu": {"distributed.processesPerNode": 4, "resources.gpusPerNode": 2},
    "multi-node-needs-s3": {"distributed.nodes": 2},
    "zero3-4bit-storage-dtype": {"distributed.deepspeed": "zero3", "quantization.mode": "4bit"},
    "zero3-not-8bit": {"distributed.deepspeed": "zero3", "quantization.mode": "8bit"},
    "cpu-offload-optimizer": {
        "distributed.deepspeed": "zero2",
        "distributed.cpuOffload": True,
        "training.optimizer": "sgd",
    },
    "zero3-no-bnb-optimizer": {
        "distributed.deepspeed": "zero3",
        "training.optimizer": "paged_adamw_8bit",
    },
    "metrics-port-not-master-port": {"metrics.port": 29500},
    "unsloth-single-gpu": {"training.engine": "unsloth", "distributed.deepspeed": "zero2"},
}

# Values each field takes in the exhaustive per-rule comparison (ABSENT: not written).
DOMAIN: dict[str, list[Any]] = {
    "objective": ["sft", "dpo", "ranking"],
    "dataset.format": ["auto", "qa", "preference", "ranked", "rated", "trading", "papers"],
    "dataset.trading": [{}], "dataset.rated": [{}],
    "dataset.papers": [{}, {"labelField": "topic"}, {"labelField": "year"}, {"labelField": ""}],
    "dataset.fieldMap": [
        {}, {"question": "Q"}, {"Q": "question", "answer": "A"}, {"topic": "t"},
        {"title": "T", "year": "Y"}, {"prompt": "p", "chosen": "c", "rejected": "r"}, {"": "x"},
    ],
    "model.task": ["causal_lm", "sequence_classification", "masked_lm"],
    "model.numLabels": [3],
    "quantization.mode": ["none", "8bit", "4bit"],
    "quantization.quantType": ["nf4", "fp4"],
    "quantization.doubleQuant": [True, False],
    "quantization.computeDtype": ["auto", "bf16", "fp16"],
    "quantization.quantStorageDtype": ["uint8", "bf16", "fp16"],
    "distributed.nodes": [1, 2],
    "distributed.processesPerNode": [1, 2, 4],
    "distributed.deepspeed": ["none", "zero2", "zero3"],
    "distributed.cpuOffload": [False, True],
    "distributed.masterPort": [29500, 9400],
    "metrics.port": [9400, 29500],
    "resources.gpusPerNode": [0, 1, 2],
    "output.uri": ["./runs", "s3://bucket/x"],
    "output.credentialsSecret": ["creds"],
    "output.s3Endpoint": ["http://minio:9000"],
    "training.optimizer": ["adamw_torch", "sgd", "adamw_8bit", "paged_adamw_8bit"],
    "training.engine": ["huggingface", "unsloth"],
    "training.warmupSteps": [10], "training.warmupRatio": [0.1],
    "training.earlyStopping": [{"patience": 2}, {"patience": 2, "patienceUnit": "epochs"}],
    "training.evalSteps": [10, 20], "training.saveSteps": [20, 30],
    "tracking.registerAs": ["my-adapter"], "tracking.mlflowUri": ["http://mlflow:5000"],
}  # fmt: skip


# Model properties a Python check may read, as the fields they derive from.
PROPERTIES = {"distributed.worldSize": ["distributed.nodes", "distributed.processesPerNode"]}


class Recorder:
    """A pydantic section that notes which fields (camelCase paths) are read from it."""

    def __init__(self, obj: Any, path: str, seen: list[str]) -> None:
        self._obj, self._path, self._seen = obj, path, seen

    def __getattr__(self, name: str) -> Any:
        key = to_camel(name)
        path = f"{self._path}.{key}" if self._path else key
        value = getattr(self._obj, name)
        if isinstance(value, BaseModel):
            return Recorder(value, path, self._seen)
        if name not in type(self._obj).model_fields:
            assert path in PROPERTIES, f"add {path} to PROPERTIES"
            self._seen += PROPERTIES[path]
        else:
            self._seen.append(path)
        return value


def rule_paths(rule: Rule) -> list[str]:
    """The fields a rule reads, below spec: those its CEL template names and those its
    Python check reads (on the base spec and the rule's invalid spec), so that a field
    either side alone reads is varied too."""
    base = rule.at.removeprefix("spec").removeprefix(".")
    templates = rule.rule + rule.message + "".join(v.cel for v in rule.values.values())
    found = [m.group(2) for m in PLACEHOLDER.finditer(templates) if m.group(1) != "="]
    paths = [f"{base}.{f}" if base else f for f in found]
    for doc in (job({}), job(INVALID[rule.name])):
        data = doc["spec"]
        for key in rule.at.split(".")[1:]:
            data = data.get(key, {})
        rule.check(Recorder(_section(section_model(rule.at), data), base, paths))
    paths = list(dict.fromkeys(paths))
    # A field inside a section the domain writes whole (training.earlyStopping) is covered.
    return [p for p in paths if not any(p.startswith(q + ".") for q in paths)]


def _section(model: type[BaseModel], data: Any) -> Any:
    """A pydantic section built from its own validators only (no cross-field rule)."""
    if model is FineTuneJobSpec:
        values: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if info.alias in data:
                sub = _model_in(info.annotation)
                raw = data[info.alias]
                values[name] = _section(sub, raw) if sub else raw
        return model.model_construct(**values)
    return model.model_validate(data, by_alias=True, by_name=False)


def python_verdict(rule: Rule, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The rule's Python check alone on a spec, as (path, message) if it fails."""
    data = doc["spec"]
    for key in rule.at.split(".")[1:]:
        data = data.get(key, {})
    section = _section(section_model(rule.at), data)
    return [] if rule.check(section) else [(rule.path, rule.render(section))]


def cel_verdict(rule: Rule, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The rule's CEL alone, on the spec as stored (defaults filled in) and as written."""
    found = []
    for spec in (with_defaults(doc, root_schema())["spec"], doc["spec"]):
        node = spec
        for key in rule.at.split(".")[1:]:
            node = node.get(key)
            if node is None:
                break  # the API server runs no rule of an absent section
        found.append([] if node is None else check_rule(validation(rule), rule.at, node))
    assert found[0] == found[1], (rule.name, doc["spec"])
    return found[0]


def from_a_rule(path: str, message: str) -> bool:
    """Whether a Python error is one of the rules' (its message fits a rule's template)."""
    for rule in RULES:
        parts = PLACEHOLDER.split(rule.message)[::3]  # the literal text between placeholders
        if path == rule.path and re.fullmatch(".+".join(map(re.escape, parts)), message):
            return True
    return False


def test_every_rule_has_an_invalid_case_and_a_unique_name() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert set(INVALID) == set(names)


def test_the_crd_holds_every_rule_where_it_belongs() -> None:
    spec = root_schema()["properties"]["spec"]
    for rule in RULES:
        node = spec
        for key in rule.at.split(".")[1:]:
            node = node["properties"][key]
        assert validation(rule) in node["x-kubernetes-validations"], rule.name
        if rule.field:  # Kubernetes refuses a fieldPath that names no field of the schema
            target = node
            for key in rule.field.split(".")[1:]:
                target = target["properties"][key]
    assert root_schema()["x-kubernetes-validations"] == [validation(NAME_RULE)]


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_spec_refused_by_both_with_the_same_path_and_message(name: str) -> None:
    rule = next(r for r in RULES if r.name == name)
    doc = job(INVALID[name])
    python = python_errors(doc)
    assert len(python) == 1 and python[0][0] == rule.path, python
    assert api_server_errors(doc) == python


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_accepted_by_every_rule_as_written_and_as_stored(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert api_server_errors(doc) == []
        assert api_server_errors(doc, old=doc) == []  # an unchanged re-apply
        # What the operator reads back (defaults filled in) still validates.
        assert python_errors(with_defaults(doc, root_schema())) == []


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_cel_and_python_agree_on_every_combination_of_the_fields_a_rule_reads(
    rule: Rule,
) -> None:
    fields = rule_paths(rule)
    assert fields and set(fields) <= set(DOMAIN), f"add {set(fields) - set(DOMAIN)} to DOMAIN"
    refused = 0
    for values in itertools.product(*([ABSENT, *DOMAIN[f]] for f in fields)):
        doc = job(dict(zip(fields, values, strict=True)))
        try:
            expected = python_verdict(rule, doc)
        except ValueError:
            continue  # a value its own section refuses (a schema-level error)
        assert cel_verdict(rule, doc) == expected, dict(zip(fields, values, strict=True))
        refused += bool(expected)
    assert refused, "no combination breaks the rule: DOMAIN misses its values"


def test_random_specs_refused_alike() -> None:
    """Whole specs: Python's first error is one of the API server's, both accept alike, and
    Python's verdict does not change once the API server has filled the defaults in."""
    rng = random.Random(20)
    both_ok = 0
    for _ in range(60):
        changes = {f: rng.choice(v) for f, v in DOMAIN.items() if rng.random() < 0.1}
        doc = job(changes)
        python = python_errors(doc)
        if python and not all(from_a_rule(*e) for e in python):
            continue  # refused by a section's own validation, not a cross-field rule
        cel = api_server_errors(doc)
        assert bool(python) == bool(cel), (changes, python, cel)
        # The operator reads the object back with the defaults filled in: same verdict.
        assert python_errors(with_defaults(doc, root_schema())) == python, changes
        assert set(python) <= set(cel), (changes, python, cel)
        both_ok += not python
    assert both_ok >= 5


def test_spec_invalid_cases_of_cross_field_rules_are_refused_by_the_api_server() -> None:
    from tests.support.spec_cases import CASES, mutate

    checked = 0
    for _, changes, path, _words in CASES:
        doc = mutate(changes)
        python = python_errors(doc)
        if len(python) == 1 and python[0][0] == path and from_a_rule(*python[0]):
            assert python[0] in api_server_errors(doc), (changes, python)
            checked += 1
    assert checked >= 10


# --- dataset.fieldMap: the one rule that reads a map's keys ---------------------------------


def _field_map_job(fmt: str, field_map: dict[str, str], **changes: Any) -> dict[str, Any]:
    objective = next(o for o, formats in FORMATS_FOR_OBJECTIVE.items() if fmt in formats)
    return job({"objective": objective, "dataset.format": fmt, "dataset.fieldMap": field_map,
                **changes})  # fmt: skip


def _field_map_message(fmt: str, label: str | None = None) -> str:
    if fmt == "auto":
        what = "any format"
        fields = "any format's" + (f", or {label}" if label else "") + "; set dataset.format to "
        fields += "list them"
    else:
        what, fields = f"format {fmt}", ", ".join(format_fields(fmt, label))
    return (
        f"a key is not a field of {what}; keys are the format's fields ({fields}), values the "
        "source's fields, e.g. {question: Q}"
    )


@pytest.mark.parametrize("fmt", get_args(DatasetFormat))
def test_field_map_keys_of_the_format_accepted_and_others_refused_alike(fmt: str) -> None:
    every = {f: f"src.{f}" for f in format_fields(fmt)}
    assert python_errors(_field_map_job(fmt, every)) == []
    assert api_server_errors(_field_map_job(fmt, every)) == []
    for wrong in ({**every, "Q": "question"}, {"questoin": "Q"}, {"": "x"}):
        doc = _field_map_job(fmt, wrong)
        python = python_errors(doc)
        assert python == [("spec.dataset.fieldMap", _field_map_message(fmt))]
        assert api_server_errors(doc) == python


@pytest.mark.parametrize("fmt", ["papers", "auto"])
def test_field_map_may_name_the_papers_label_field(fmt: str) -> None:
    labelled = _field_map_job(fmt, {"topic": "meta.area", "title": "T"},
                              **{"dataset.papers": {"labelField": "topic"}})  # fmt: skip
    assert python_errors(labelled) == [] and api_server_errors(labelled) == []
    # A label field that is also a format field (listed twice, as Python lists it), and the
    # longest label field: the message stays under the length errors are cut to.
    for label in ("year", "x" * 128):
        doc = _field_map_job(fmt, {label: "Y", "topic": "t"},
                             **{"dataset.papers": {"labelField": label}})  # fmt: skip
        expected = [("spec.dataset.fieldMap", _field_map_message(fmt, label))]
        assert python_errors(doc) == expected
        assert api_server_errors(doc) == expected
