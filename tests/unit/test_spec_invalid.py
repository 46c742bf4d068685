"""Bad FineTuneJobs: each gives one clear message naming the field path and the fix.

Every case goes through the model (parse_job) and through `kubetune validate` as a user runs
it: in-process with click's runner (exceptions propagate, so a crash fails the case) and all
together in one real subprocess (what a traceback would really print to).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubetune_api.loader import InvalidSpecError, parse_job
from kubetune_trainer.commands.validate import command as validate_command

BASE: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "ok-job", "namespace": "default"},
    "spec": {
        "model": {"base": "meta-llama/Llama-2-7b-hf"},
        "dataset": {"source": "data/train.jsonl", "format": "qa"},
    },
}

_DELETE = object()


def mutate(changes: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return doc


# (id, changes, expected path, words the message must hold)
CASES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("unknown-top-field", {"spec.epochz": 3}, "spec.epochz", ("unknown field", "training")),
    ("unknown-nested-field", {"spec.training.lr": 0.1}, "spec.training.lr",
     ("unknown field", "learningRate")),
    ("wrong-type", {"spec.training.epochs": "three"}, "spec.training.epochs", ("number",)),
    ("negative-lr", {"spec.training.learningRate": -1e-4}, "spec.training.learningRate",
     ("greater than 0",)),
    ("lora-r-zero", {"spec.adapter.r": 0}, "spec.adapter.r", ("greater than or equal to 1",)),
    ("dropout-1.5", {"spec.adapter.dropout": 1.5}, "spec.adapter.dropout", ("less than 1",)),
    ("dpo-with-qa", {"spec.objective": "dpo"}, "spec.dataset.format",
     ("cannot train objective 'dpo'", "preference")),
    ("ranking-with-qa", {"spec.objective": "ranking"}, "spec.dataset.format", ("ranked",)),
    ("sft-with-preference", {"spec.dataset.format": "preference"}, "spec.dataset.format",
     ("cannot train objective 'sft'",)),
    ("unknown-objective", {"spec.objective": "ppo"}, "spec.objective",
     ("'sft', 'dpo' or 'ranking'",)),
    ("nodes-zero", {"spec.distributed.nodes": 0}, "spec.distributed.nodes",
     ("greater than or equal to 1",)),
    ("procs-over-gpus", {"spec.distributed.processesPerNode": 4, "spec.resources.gpusPerNode": 2},
     "spec.distributed.processesPerNode", ("only 2 GPUs", "at most 2")),
    ("output-unknown-scheme", {"spec.output.uri": "gs://bucket/x"}, "spec.output.uri",
     ("unsupported scheme 'gs'", "s3://")),
    ("output-bad-bucket", {"spec.output.uri": "s3://B/x"}, "spec.output.uri", ("bucket",)),
    ("secret-not-dns", {"spec.output.uri": "s3://bucket/x", "spec.output.credentialsSecret":
     "My_Secret"}, "spec.output.credentialsSecret", ("DNS label",)),
    ("secret-with-local-output", {"spec.output.credentialsSecret": "creds"},
     "spec.output.credentialsSecret", ("s3://",)),
    ("8bit-with-4bit-opts", {"spec.quantization": {"mode": "8bit", "quantType": "fp4"}},
     "spec.quantization", ("quantType", "4bit")),
    ("none-with-double-quant", {"spec.quantization": {"doubleQuant": False}},
     "spec.quantization", ("doubleQuant",)),
    ("bad-quant-mode", {"spec.quantization": {"mode": "2bit"}}, "spec.quantization.mode",
     ("'none', '8bit' or '4bit'",)),
    ("warmup-both", {"spec.training.warmupSteps": 10, "spec.training.warmupRatio": 0.1},
     "spec.training.warmupRatio", ("mutually exclusive",)),
    ("early-stop-no-eval", {"spec.training.earlyStopping": {"patience": 2}},
     "spec.training.evalSteps", ("evalSteps",)),
    ("bad-precision", {"spec.training.precision": "int8"}, "spec.training.precision",
     ("'auto', 'bf16', 'fp16' or 'fp32'",)),
    ("missing-model", {"spec.model": _DELETE}, "spec.model", ("required",)),
    ("missing-dataset-source", {"spec.dataset": {"format": "qa"}}, "spec.dataset.source",
     ("required",)),
    ("unknown-builtin", {"spec.model.base": "builtin:gpt5"}, "spec.model.base",
     ("unknown built-in model", "builtin:tiny-llama")),
    ("model-http-scheme", {"spec.model.base": "http://x/y"}, "spec.model.base",
     ("unsupported scheme",)),
    ("cls-without-labels", {"spec.model.task": "sequence_classification"},
     "spec.model.numLabels", ("required", "set model.numLabels")),
    ("labels-without-cls", {"spec.model.numLabels": 3}, "spec.model.numLabels",
     ("only applies",
      "remove model.numLabels or set model.task: sequence_classification")),
    ("tokenizer-unknown-scheme", {"spec.model.tokenizer": "gs://x"}, "spec.model.tokenizer",
     ("unsupported scheme 'gs'", "s3://bucket/prefix")),
    ("tokenizer-builtin", {"spec.model.tokenizer": "builtin:tiny-llama"},
     "spec.model.tokenizer", ("remove model.tokenizer",)),
    ("tokenizer-bad-bucket", {"spec.model.tokenizer": "s3://B/tok"}, "spec.model.tokenizer",
     ("bucket",)),
    ("mlflow-ftp", {"spec.tracking.mlflowUri": "ftp://x"}, "spec.tracking.mlflowUri",
     ("http(s)://", "sqlite:///")),
    ("mlflow-bare-host", {"spec.tracking.mlflowUri": "mlflow.svc:5000"},
     "spec.tracking.mlflowUri", ("http(s)://",)),
    ("dpo-on-encoder", {"spec.model.task": "sequence_classification", "spec.model.numLabels": 2,
     "spec.objective": "dpo", "spec.dataset.format": "preference"}, "spec.objective",
     ("causal_lm",)),
    ("multinode-local-output", {"spec.distributed.nodes": 2}, "spec.output.uri",
     ("shared storage", "s3://")),
    ("zero3-4bit-storage", {"spec.distributed.deepspeed": "zero3",
     "spec.quantization": {"mode": "4bit"}}, "spec.quantization.quantStorageDtype",
     ("quantStorageDtype must equal the compute dtype", "bf16")),
    ("zero3-8bit", {"spec.distributed.deepspeed": "zero3", "spec.quantization": {"mode": "8bit"}},
     "spec.distributed.deepspeed", ("ZeRO-3",)),
    ("offload-sgd", {"spec.distributed.deepspeed": "zero2", "spec.distributed.cpuOffload": True,
                     "spec.training.optimizer": "sgd"},
     "spec.training.optimizer", ("cpuOffload", "adamw_torch")),
    ("zero3-bnb-optimizer", {"spec.distributed.deepspeed": "zero3",
                             "spec.training.optimizer": "paged_adamw_8bit"},
     "spec.training.optimizer", ("ZeRO-3", "zero2")),
    ("offload-without-ds", {"spec.distributed.cpuOffload": True}, "spec.distributed.cpuOffload",
     ("`cpuOffload`",)),
    ("bad-memory-quantity", {"spec.resources.memory": "16 GB"}, "spec.resources.memory",
     ("Kubernetes quantity",)),
    ("bad-name", {"metadata.name": "My_Job"}, "metadata.name", ("DNS-1035", "lowercase")),
    ("name-too-long", {"metadata.name": "a" * 41}, "metadata.name", ("at most 40",)),
    ("wrong-kind", {"kind": "TrainingJob"}, "kind", ("'FineTuneJob'",)),
    ("wrong-api-version", {"apiVersion": "kubetune.io/v1"}, "apiVersion",
     ("kubetune.io/v1alpha1",)),
    ("bad-format", {"spec.dataset.format": "csv"}, "spec.dataset.format", ("'auto'",)),
    ("split-fraction-1", {"spec.dataset.validation": {"fraction": 1.0}},
     "spec.dataset.validation.fraction", ("less than 1",)),
    ("trading-opts-wrong-format", {"spec.dataset.trading": {"window": 10}},
     "spec.dataset.trading",
     ("dataset.format: trading",)),
    ("register-without-mlflow", {"spec.tracking": {"registerAs": "x"}},
     "spec.tracking.registerAs", ("needs tracking.mlflowUri", "set tracking.mlflowUri")),
    ("negative-restarts", {"spec.runPolicy.maxRestarts": -1}, "spec.runPolicy.maxRestarts",
     ("greater than or equal to 0",)),
    ("bad-queue", {"spec.runPolicy.queueName": "Team Queue"}, "spec.runPolicy.queueName",
     ("DNS label",)),
    ("unsloth-distributed", {"spec.training.engine": "unsloth", "spec.distributed.nodes": 2,
     "spec.output.uri": "s3://bucket/x"}, "spec.training.engine", ("single GPU",)),
    ("target-module-bad", {"spec.adapter.targetModules": ["q_proj;rm -rf"]},
     "spec.adapter.targetModules", ("may hold only",)),
    ("empty-targets", {"spec.adapter.targetModules": []}, "spec.adapter.targetModules",
     ("at least 1",)),
    ("seq-too-short", {"spec.dataset.maxSeqLength": 8}, "spec.dataset.maxSeqLength",
     ("greater than or equal to 16",)),
    # Strict types, as the CRD's: no string->int, bool->int or float->int coercion.
    ("string-int", {"spec.training.maxSteps": "10"}, "spec.training.maxSteps",
     ("valid integer", "'10'")),
    ("bool-int", {"spec.adapter.r": True}, "spec.adapter.r", ("valid integer",)),
    ("float-int", {"spec.adapter.r": 8.0}, "spec.adapter.r", ("valid integer",)),
    ("bool-float", {"spec.training.learningRate": True}, "spec.training.learningRate",
     ("valid number",)),
    ("string-float", {"spec.training.learningRate": "0.001"}, "spec.training.learningRate",
     ("valid number",)),
    ("string-bool", {"spec.runPolicy.suspend": "true"}, "spec.runPolicy.suspend",
     ("valid boolean",)),
    ("int-bool", {"spec.runPolicy.suspend": 1}, "spec.runPolicy.suspend", ("valid boolean",)),
    ("int-in-string-map", {"spec.dataset.fieldMap": {"question": 1}},
     "spec.dataset.fieldMap.question", ("valid string",)),
    ("inf", {"spec.training.learningRate": float("inf")}, "spec.training.learningRate",
     ("finite number",)),
    ("nan", {"spec.adapter.alpha": float("nan")}, "spec.adapter.alpha", ("finite number",)),
    ("seed-over-32-bit", {"spec.training.seed": 2**32}, "spec.training.seed",
     ("less than or equal to 4294967295",)),
    # Unknown keys anywhere the CRD would prune them, snake_case ones included.
    ("snake-case-key", {"spec.training.learning_rate": 0.1}, "spec.training.learning_rate",
     ("unknown field", "learningRate")),
    ("snake-case-section", {"spec.run_policy": {"suspend": True}}, "spec.run_policy",
     ("unknown field", "runPolicy")),
    ("unknown-metadata-key", {"metadata.nmae": "x"}, "metadata.nmae",
     ("unknown field", "namespace")),
    ("unknown-toleration-key", {"spec.resources.tolerations": [{"operator": "Exists", "x": 1}]},
     "spec.resources.tolerations[0].x", ("unknown field",)),
    # Names, namespaces and patterns: Kubernetes' rules, no trailing newline.
    ("namespace-traversal", {"metadata.namespace": "../../x"}, "metadata.namespace",
     ("not a DNS label",)),
    ("namespace-too-long", {"metadata.namespace": "a" * 64}, "metadata.namespace",
     ("at most 63",)),
    ("namespace-newline", {"metadata.namespace": "team\n"}, "metadata.namespace",
     ("not a DNS label",)),
    ("name-newline", {"metadata.name": "ok-job\n"}, "metadata.name", ("DNS-1035",)),
    ("output-uri-newline", {"spec.output.uri": "s3://bucket/x\n"}, "spec.output.uri",
     ("control character",)),
    ("dataset-path-newline", {"spec.dataset.source": "data/train.jsonl\n"},
     "spec.dataset.source", ("control character",)),
    ("model-id-newline", {"spec.model.base": "org/name\n"}, "spec.model.base",
     ("control character",)),
    ("mlflow-newline", {"spec.tracking.mlflowUri": "http://mlflow:5000\n"},
     "spec.tracking.mlflowUri", ("control character",)),
    ("s3-endpoint-newline", {"spec.output.uri": "s3://bucket/x",
     "spec.output.s3Endpoint": "http://minio:9000\n"}, "spec.output.s3Endpoint",
     ("control character",)),
    ("s3-endpoint-nul", {"spec.output.uri": "s3://bucket/x",
     "spec.output.s3Endpoint": "http://minio:9000/\x00"}, "spec.output.s3Endpoint",
     ("control character",)),
    ("mlflow-nul", {"spec.tracking.mlflowUri": "http://mlflow:5000/\x00"},
     "spec.tracking.mlflowUri", ("control character",)),
    ("uri-too-long", {"spec.dataset.source": "d/" * 3000}, "spec.dataset.source",
     ("at most 4096",)),
    ("gguf-newline", {"spec.model.ggufFile": "m.gguf\n"}, "spec.model.ggufFile",
     ("should match pattern",)),
    ("gguf-traversal", {"spec.model.ggufFile": "../m.gguf"}, "spec.model.ggufFile",
     ("should match pattern",)),
    ("revision-newline", {"spec.model.revision": "main\n"}, "spec.model.revision",
     ("should match pattern",)),
    ("secret-newline", {"spec.output.uri": "s3://bucket/x",
     "spec.output.credentialsSecret": "creds\n"}, "spec.output.credentialsSecret",
     ("DNS label",)),
    ("register-as-traversal", {"spec.tracking": {"mlflowUri": "http://m:5000",
     "registerAs": "../../x"}}, "spec.tracking.registerAs", ("registry name", "'..'")),
    ("register-as-absolute", {"spec.tracking": {"mlflowUri": "http://m:5000",
     "registerAs": "/etc/x"}}, "spec.tracking.registerAs", ("registry name", "'/'")),
    ("register-as-dots", {"spec.tracking": {"mlflowUri": "http://m:5000",
     "registerAs": "a..b"}}, "spec.tracking.registerAs", ("registry name",)),
    ("register-as-newline", {"spec.tracking": {"mlflowUri": "http://m:5000",
     "registerAs": "model\n"}}, "spec.tracking.registerAs", ("registry name",)),
    ("pushgateway-no-scheme", {"spec.metrics.pushgatewayUrl": "pushgw:9091"},
     "spec.metrics.pushgatewayUrl", ("http(s) URL",)),
    ("modules-to-save-bad", {"spec.adapter.modulesToSave": ["a;b"]},
     "spec.adapter.modulesToSave", ("may hold only",)),
    # What the API server would refuse in the FineTuneJob or in the Pods built from it.
    ("duplicate-ports", {"spec.metrics.port": 29500}, "spec.metrics.port",
     ("spec.distributed.masterPort", "another port")),
    ("label-key-bad", {"metadata.labels": {"bad key!": "x"}}, "metadata.labels",
     ("label key", "invalid")),
    ("label-prefix-bad", {"metadata.labels": {"Example.COM/x": "y"}}, "metadata.labels",
     ("prefix",)),
    ("label-value-bad", {"metadata.labels": {"team": "a b"}}, "metadata.labels",
     ("not a label value",)),
    ("label-value-too-long", {"metadata.labels": {"team": "a" * 64}}, "metadata.labels",
     ("at most 63",)),
    ("annotation-key-bad", {"metadata.annotations": {"/x": "y"}}, "metadata.annotations",
     ("prefix",)),
    ("annotations-too-big", {"metadata.annotations": {"a": "x" * 300_000}},
     "metadata.annotations", ("256 KiB",)),
    ("node-selector-bad", {"spec.resources.nodeSelector": {"gpu": "a/b"}},
     "spec.resources.nodeSelector", ("not a label value",)),
    ("gpu-type-bad", {"spec.resources.gpuType": "NVIDIA A100"}, "spec.resources.gpuType",
     ("not a label value",)),
    ("toleration-exists-value", {"spec.resources.tolerations": [
     {"key": "k", "operator": "Exists", "value": "v"}]}, "spec.resources.tolerations[0]",
     ("`value` must be empty",)),
    ("toleration-seconds-no-noexecute", {"spec.resources.tolerations": [
     {"key": "k", "value": "v", "tolerationSeconds": 5}]}, "spec.resources.tolerations[0]",
     ("NoExecute",)),
    ("toleration-key-bad", {"spec.resources.tolerations": [{"key": "a b", "value": "v"}]},
     "spec.resources.tolerations[0]", ("taint key",)),
    ("quantity-newline", {"spec.resources.memory": "16Gi\n"}, "spec.resources.memory",
     ("Kubernetes quantity",)),
    ("quantity-negative", {"spec.resources.cpu": "-1"}, "spec.resources.cpu",
     ("Kubernetes quantity",)),
    ("image-garbage", {"spec.resources.image": "not an image"}, "spec.resources.image",
     ("image reference",)),
    ("image-short-digest", {"spec.resources.image": "repo/trainer@sha256:abc"},
     "spec.resources.image", ("image reference", "64 hex")),
    ("image-uppercase-repo", {"spec.resources.image": "ghcr.io/Org/trainer:1"},
     "spec.resources.image", ("image reference",)),
    ("image-newline", {"spec.resources.image": "ghcr.io/org/trainer:1\n"},
     "spec.resources.image", ("image reference",)),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_invalid_spec_names_field_and_fix(
    changes: dict[str, Any], path: str, words: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_job(mutate(changes), "job.yaml", by_name=False)  # as load_file parses a file
    errors = info.value.errors
    assert len(errors) == 1, [str(e) for e in errors]
    err = errors[0]
    assert err.path == path, str(err)
    for word in words:
        assert word in err.message, str(err)


@pytest.mark.parametrize(("changes", "path", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_kubetune_validate_prints_one_problem_line(
    changes: dict[str, Any], path: str, words: tuple[str, ...], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(yaml.safe_dump(mutate(changes)))
    # catch_exceptions=False: anything but the command's own exit is raised into the test.
    result = CliRunner().invoke(validate_command, ["job.yaml"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    problems = [ln for ln in result.stderr.splitlines() if ln.startswith("job.yaml: ")]
    assert len(problems) == 1, result.stderr
    assert problems[0].startswith(f"job.yaml: {path}: "), problems[0]
    for word in words:
        assert word in problems[0], problems[0]
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == "1 of 1 file(s) invalid"


def test_every_case_through_a_real_kubetune_validate(tmp_path: Path) -> None:
    files = []
    for case_id, changes, _, _ in CASES:
        f = tmp_path / f"{case_id}.yaml"
        f.write_text(yaml.safe_dump(mutate(changes)))
        files.append(f.name)
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "validate", *files],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    for (case_id, _, path, _), name in zip(CASES, files, strict=True):
        mine = [ln for ln in lines if ln.startswith(f"{name}: ")]
        assert len(mine) == 1 and mine[0].startswith(f"{name}: {path}: "), (case_id, mine)
    assert f"{len(CASES)} of {len(CASES)} file(s) invalid" in proc.stderr


def test_base_document_is_valid() -> None:
    job = parse_job(copy.deepcopy(BASE))
    assert job.spec.adapter.target_modules == ["q_proj", "v_proj"]
    assert job.spec.quantization.mode == "none"
    assert job.spec.model.trust_remote_code is False


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_every_error_is_reported_at_once() -> None:
    doc = mutate({"spec.training.learningRate": -1, "spec.adapter.r": 0, "spec.bogus": 1})
    with pytest.raises(InvalidSpecError) as info:
        parse_job(doc)
    assert {e.path for e in info.value.errors} == {
        "spec.training.learningRate", "spec.adapter.r", "spec.bogus"}  # fmt: skip
