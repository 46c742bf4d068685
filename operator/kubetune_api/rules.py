"""The cross-field rules, written once for both validators.

Each rule holds a CEL template (crd_rules.py turns it into the CRD's
`x-kubernetes-validations`, so the API server refuses the object at `kubectl apply`) and the
same condition in Python (run by the spec model's validator, so `kubetune validate` and the
operator refuse it), with one message template and one field path.
tests/unit/test_cel_rules.py evaluates the CEL with cel-python against the Python check on
every example, an invalid spec per rule, and every combination of the fields either reads.

Templates: rule_core.py. No list or map of the object is iterated: each rule costs a few
comparisons (field-map-keys: a comprehension over a literal list), far below the API
server's cost budget.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic.alias_generators import to_camel, to_snake

from .kube_names import DNS1035_LABEL, anchored, matches
from .rule_core import PLACEHOLDER, Rule, cel_list, cel_literal, cel_string
from .rules_field_map import FIELD_MAP_RULE
from .spec_data import FORMATS_FOR_OBJECTIVE
from .spec_model import QuantizationSpec
from .uris import is_remote

__all__ = ["NAME_RULE", "PLACEHOLDER", "RULES", "Rule", "enforce"]


def enforce(spec: Any) -> None:
    """Raise ValueError("<path>: <message>") for the first rule the spec breaks."""
    for rule in RULES:
        section = spec
        for key in rule.at.split(".")[1:]:
            section = getattr(section, to_snake(key))
        if not rule.check(section):
            raise ValueError(f"{rule.path}: {rule.render(section)}")


def _formats_for_objective() -> list[Rule]:
    return [
        Rule(
            name=f"format-for-{objective}",
            at="spec",
            field=".dataset.format",
            rule=f"{{objective}} != {cel_string(objective)} || {{dataset.format}} in "
            f"{cel_list(formats)}",
            message=f"'{{dataset.format}}' cannot train objective '{objective}'; use one of "
            f"{', '.join(formats)}",
            check=lambda s, o=objective, f=formats: s.objective != o or s.dataset.format in f,
        )
        for objective, formats in FORMATS_FOR_OBJECTIVE.items()
    ]


def _s3_output_only(**names: str) -> list[Rule]:
    """Output fields (attribute -> rule name) that only an s3:// output.uri uses."""
    return [
        Rule(
            name=name,
            at="spec.output",
            field=f".{to_camel(attr)}",
            rule=f"!{{?{to_camel(attr)}}} || {{uri}}.startsWith('s3://')",
            message="only applies to an s3:// output.uri; remove it for a local output",
            check=lambda o, a=attr: getattr(o, a) is None or is_remote(o.uri),
            reason="FieldValueForbidden",
        )
        for attr, name in names.items()
    ]


_ZERO3_4BIT = "{distributed.deepspeed} == 'zero3' && {quantization.mode} == '4bit'"
_COMPUTE = "({quantization.computeDtype} == 'auto' ? 'bf16' : {quantization.computeDtype})"
_BNB_OPTIMIZERS: Final = ("paged_adamw_8bit", "adamw_8bit")
# The 4-bit-only quantization options that have defaults: the API server fills those in for
# every mode, so on an 8-bit job only a value that differs from the default is refused.
_4BIT_DEFAULTS: Final[dict[str, str | bool]] = {
    to_camel(name): QuantizationSpec.model_fields[name].default
    for name in ("quant_type", "double_quant", "compute_dtype")
}


def _at_defaults(defaults: dict[str, str | bool]) -> str:
    return " && ".join(f"{{{k}}} == {cel_literal(v)}" for k, v in defaults.items())


def _compute_dtype(q: Any) -> str:
    return "bf16" if q.compute_dtype == "auto" else str(q.compute_dtype)


RULES: Final[tuple[Rule, ...]] = (
    # spec.model
    Rule(
        name="num-labels-required",
        at="spec.model",
        field=".numLabels",
        rule="{task} != 'sequence_classification' || {?numLabels}",
        message="required when model.task is sequence_classification; set model.numLabels to "
        "the number of classes (2 or more)",
        check=lambda m: m.task != "sequence_classification" or m.num_labels is not None,
        reason="FieldValueRequired",
    ),
    Rule(
        name="num-labels-only-for-classification",
        at="spec.model",
        field=".numLabels",
        rule="{task} == 'sequence_classification' || !{?numLabels}",
        message="only applies to model.task sequence_classification (task is '{task}'); remove "
        "model.numLabels or set model.task: sequence_classification",
        check=lambda m: m.task == "sequence_classification" or m.num_labels is None,
        reason="FieldValueForbidden",
    ),
    # spec.quantization
    Rule(
        name="4bit-only-options",
        at="spec.quantization",
        field="",
        rule=f"{{mode}} == '4bit' || ({_at_defaults(_4BIT_DEFAULTS)} && !{{?quantStorageDtype}})",
        message="quantType, doubleQuant, computeDtype and quantStorageDtype only apply to mode "
        "4bit (mode is '{mode}'); remove them or set quantization.mode: 4bit",
        check=lambda q: (
            q.mode == "4bit"
            or (
                (q.quant_type, q.double_quant, q.compute_dtype) == tuple(_4BIT_DEFAULTS.values())
                and q.quant_storage_dtype is None
            )
        ),
        reason="FieldValueForbidden",
    ),
    # spec.dataset
    *(
        Rule(
            name=f"{opt}-options-need-format",
            at="spec.dataset",
            field=f".{opt}",
            rule=f"!{{?{opt}}} || {{format}} in ['{opt}', 'auto']",
            message=f"options for format {opt} but format is '{{format}}'; set dataset.format: "
            f"{opt} or remove dataset.{opt}",
            check=lambda d, o=opt: getattr(d, o) is None or d.format in (o, "auto"),
            reason="FieldValueForbidden",
        )
        for opt in ("trading", "papers", "rated")
    ),
    FIELD_MAP_RULE,
    # spec.training
    Rule(
        name="warmup-steps-or-ratio",
        at="spec.training",
        field=".warmupRatio",
        rule="!{?warmupSteps} || !{?warmupRatio}",
        message="`warmupSteps` and `warmupRatio` are mutually exclusive; keep one of them",
        check=lambda t: t.warmup_steps is None or t.warmup_ratio is None,
        reason="FieldValueForbidden",
    ),
    Rule(
        name="early-stopping-needs-eval-steps",
        at="spec.training",
        field=".evalSteps",
        rule="!{?earlyStopping} || {earlyStopping.patienceUnit} == 'epochs' || {?evalSteps}",
        message="`earlyStopping` needs `evalSteps` (evaluation every N steps) to judge progress, "
        "or `earlyStopping.patienceUnit: epochs` (evaluation each epoch)",
        check=lambda t: (
            t.early_stopping is None
            or t.early_stopping.patience_unit == "epochs"
            or t.eval_steps is not None
        ),
        reason="FieldValueRequired",
    ),
    Rule(
        name="early-stopping-save-on-eval",
        at="spec.training",
        field=".saveSteps",
        rule="!{?earlyStopping} || !{?saveSteps} || !{?evalSteps} || "
        "{saveSteps} % {evalSteps} == 0",
        message="with `earlyStopping`, `saveSteps` ({saveSteps}) must be a multiple of `evalSteps` "
        "({evalSteps}) so the best checkpoint is one that was saved",
        check=lambda t: (
            t.early_stopping is None
            or t.save_steps is None
            or t.eval_steps is None
            or t.save_steps % t.eval_steps == 0
        ),
    ),
    # spec.distributed
    Rule(
        name="cpu-offload-needs-deepspeed",
        at="spec.distributed",
        field=".cpuOffload",
        rule="!{cpuOffload} || {deepspeed} != 'none'",
        message="`cpuOffload` needs `deepspeed: zero2` or `zero3`",
        check=lambda d: not d.cpu_offload or d.deepspeed != "none",
    ),
    # spec.output
    *_s3_output_only(credentials_secret="credentials-need-s3", s3_endpoint="endpoint-needs-s3"),
    # spec.tracking
    Rule(
        name="register-needs-mlflow",
        at="spec.tracking",
        field=".registerAs",
        rule="!{?registerAs} || {?mlflowUri}",
        message="needs tracking.mlflowUri (the registry is MLflow's); set tracking.mlflowUri "
        "or remove tracking.registerAs",
        check=lambda t: t.register_as is None or t.mlflow_uri is not None,
    ),
    # spec: rules across sections
    *_formats_for_objective(),
    Rule(
        name="objective-needs-causal-lm",
        at="spec",
        field=".objective",
        rule="{objective} == 'sft' || {model.task} == 'causal_lm'",
        message="'{objective}' needs a causal_lm model (model.task is '{model.task}'); use "
        "objective sft",
        check=lambda s: s.objective == "sft" or s.model.task == "causal_lm",
    ),
    Rule(
        name="one-process-per-gpu",
        at="spec",
        field=".distributed.processesPerNode",
        rule="{resources.gpusPerNode} == 0 || "
        "{distributed.processesPerNode} <= {resources.gpusPerNode}",
        message="{distributed.processesPerNode} processes per node but only "
        "{resources.gpusPerNode} GPUs per node; use at most {resources.gpusPerNode} (one "
        "process per GPU)",
        check=lambda s: (
            s.resources.gpus_per_node == 0
            or s.distributed.processes_per_node <= s.resources.gpus_per_node
        ),
    ),
    Rule(
        name="multi-node-needs-s3",
        at="spec",
        field=".output.uri",
        rule="{distributed.nodes} == 1 || {output.uri}.startsWith('s3://')",
        message="a multi-node job needs shared storage that every pod can reach; use "
        "s3://bucket/prefix",
        check=lambda s: s.distributed.nodes == 1 or is_remote(s.output.uri),
    ),
    Rule(
        name="zero3-4bit-storage-dtype",
        at="spec",
        field=".quantization.quantStorageDtype",
        rule=f"!({_ZERO3_4BIT}) || ({{?quantization.quantStorageDtype}} && "
        f"{{quantization.quantStorageDtype}} == {_COMPUTE})",
        message="4-bit with DeepSpeed ZeRO-3 shards the packed weights, so quantStorageDtype must "
        "equal the compute dtype: set it to quantization.computeDtype (bf16 when that is auto)",
        check=lambda s: (
            not (s.distributed.deepspeed == "zero3" and s.quantization.mode == "4bit")
            or s.quantization.quant_storage_dtype == _compute_dtype(s.quantization)
        ),
    ),
    Rule(
        name="zero3-not-8bit",
        at="spec",
        field=".distributed.deepspeed",
        rule="{distributed.deepspeed} != 'zero3' || {quantization.mode} != '8bit'",
        message="ZeRO-3 cannot shard 8-bit weights; use zero2 or quantization.mode 4bit",
        check=lambda s: s.distributed.deepspeed != "zero3" or s.quantization.mode != "8bit",
    ),
    Rule(
        # DeepSpeed's CPU Adam is the offloaded optimizer: bitsandbytes' 8-bit/paged ones keep
        # CUDA state it cannot move, and SGD has no DeepSpeed CPU kernel.
        name="cpu-offload-optimizer",
        at="spec",
        field=".training.optimizer",
        rule="!{distributed.cpuOffload} || {training.optimizer} == 'adamw_torch'",
        message="'{training.optimizer}' cannot run with spec.distributed.cpuOffload: the offloaded "
        "optimizer is DeepSpeed's CPU Adam; set optimizer: adamw_torch or turn cpuOffload off",
        check=lambda s: not s.distributed.cpu_offload or s.training.optimizer == "adamw_torch",
    ),
    Rule(
        name="zero3-no-bnb-optimizer",
        at="spec",
        field=".training.optimizer",
        rule="{distributed.deepspeed} != 'zero3' || !({training.optimizer} in "
        f"{cel_list(_BNB_OPTIMIZERS)})",
        message="'{training.optimizer}' (bitsandbytes) cannot step ZeRO-3's partitioned "
        "parameters; use adamw_torch, or deepspeed: zero2",
        check=lambda s: (
            s.distributed.deepspeed != "zero3" or s.training.optimizer not in _BNB_OPTIMIZERS
        ),
    ),
    Rule(
        name="metrics-port-not-master-port",
        at="spec",
        field=".metrics.port",
        rule="{metrics.port} != {distributed.masterPort}",
        message="{metrics.port} is also spec.distributed.masterPort; the pod's Service and "
        "container cannot list one port twice: use another port",
        check=lambda s: s.metrics.port != s.distributed.master_port,
        reason="FieldValueInvalid",
    ),
    Rule(
        name="unsloth-single-gpu",
        at="spec",
        field=".training.engine",
        rule="{training.engine} != 'unsloth' || ({distributed.nodes} == 1 && "
        "{distributed.processesPerNode} == 1 && {distributed.deepspeed} == 'none')",
        message="unsloth trains on a single GPU; use engine huggingface for distributed or "
        "DeepSpeed runs",
        check=lambda s: (
            s.training.engine != "unsloth"
            or (s.distributed.world_size == 1 and s.distributed.deepspeed == "none")
        ),
    ),
)


# Children are named <name>-a<attempt>[-<suffix>]; keep room for that in 63 characters.
MAX_NAME_LENGTH: Final = 40

# On the object itself (the API server lets a rule there read metadata.name); the CRD's
# metadata schema has the same limits, with the API server's own wording.
NAME_RULE: Final = Rule(
    name="name",
    at="",
    field=".metadata.name",
    rule=f"!has(self.metadata.name) || (size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
    f"self.metadata.name.matches({cel_string(anchored(DNS1035_LABEL))}))",
    message=f"not a valid FineTuneJob name (a DNS-1035 label): use at most {MAX_NAME_LENGTH} "
    "lowercase letters, digits and '-', starting with a letter and ending with a letter or "
    "digit (child objects append an attempt suffix)",
    check=lambda name: len(name) <= MAX_NAME_LENGTH and matches(DNS1035_LABEL, name),
)
