"""spec.pod (what a researcher sets on the trainer pods) and the platform's trainer defaults:
every refused input names its field and the fix, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_api.loader import InvalidSpecError, parse_job
from kubetune_api.trainer_defaults import (
    TrainerDefaultsError,
    load_trainer_defaults,
    parse_trainer_defaults,
)

ROOT = Path(__file__).resolve().parents[2]
JOB = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "j"},
    "spec": {"model": {"base": "builtin:tiny-llama"},
             "dataset": {"source": "d.jsonl", "format": "chat"}},
}  # fmt: skip


def job_with(pod: dict) -> dict:
    return {**JOB, "spec": {**JOB["spec"], "pod": pod}}


def env(name: str, **kw: object) -> dict:
    return {"name": name, **(kw or {"value": "x"})}


def test_accepted_spec_pod():
    job = parse_job(job_with({
        "env": [env("HF_HUB_OFFLINE"), env("HF_TOKEN", valueFrom={"secretKeyRef": {
            "name": "hf-token", "key": "token"}})],
        "envFrom": [{"configMapRef": {"name": "settings", "optional": True}}],
        "labels": {"example.com/team": "nlp"}, "annotations": {"note": "free text: ok"},
    }), by_name=False)  # fmt: skip
    assert [v.name for v in job.spec.pod.env] == ["HF_HUB_OFFLINE", "HF_TOKEN"]
    assert parse_job(JOB, by_name=False).spec.pod.env == []
    # The one kubetune setting a job may choose: the allocator (the image has both).
    allocator = parse_job(job_with({"env": [env("KUBETUNE_ALLOCATOR", value="jemalloc")]}))
    assert [v.name for v in allocator.spec.pod.env] == ["KUBETUNE_ALLOCATOR"]


REFUSED_JOB = [
    ({"env": [env("KUBETUNE_ATTEMPT")]}, "spec.pod.env", "'KUBETUNE_ATTEMPT' is set by kubetune"),
    ({"env": [env("MASTER_ADDR")]}, "spec.pod.env", "'MASTER_ADDR' is set by kubetune"),
    ({"env": [env("WORLD_SIZE")]}, "spec.pod.env", "torchrun"),
    ({"env": [env("TORCHELASTIC_RUN_ID")]}, "spec.pod.env", "is set by kubetune"),
    ({"env": [env("HOME")]}, "spec.pod.env", "'HOME' is set by kubetune"),
    ({"env": [env("AWS_ENDPOINT_URL")]}, "spec.pod.env", "is set by kubetune"),
    ({"env": [env("NVIDIA_VISIBLE_DEVICES")]}, "spec.pod.env", "only the platform"),
    ({"env": [env("LD_PRELOAD")]}, "spec.pod.env", "only the platform"),
    ({"env": [env("A"), env("A")]}, "spec.pod.env", "'A' is listed twice"),
    ({"env": [env("1A")]}, "spec.pod.env[0].name", "not an environment variable name"),
    ({"env": [{"name": "A"}]}, "spec.pod.env[0]", "exactly one of `value` or `valueFrom`"),
    ({"env": [env("A", value="v", valueFrom={"secretKeyRef": {"name": "s", "key": "k"}})]},
     "spec.pod.env[0]", "exactly one of `value` or `valueFrom`"),
    ({"env": [env("A", valueFrom={"secretKeyRef": {"name": "S_bad", "key": "k"}})]},
     "spec.pod.env[0].valueFrom.secretKeyRef.name", "not a DNS label"),
    ({"env": [env("A", valueFrom={})]}, "spec.pod.env[0].valueFrom", "exactly one of"),
    ({"envFrom": [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]},
     "spec.pod.envFrom[0]", "exactly one of `secretRef` or `configMapRef`"),
    ({"labels": {"app.kubernetes.io/name": "x"}}, "spec.pod.labels", "kubetune's own"),
    ({"labels": {"kubetune.io/job": "other"}}, "spec.pod.labels", "kubetune's own"),
    ({"labels": {"kueue.x-k8s.io/queue-name": "q"}}, "spec.pod.labels", "kubetune's own"),
    ({"labels": {"team": "a b"}}, "spec.pod.labels", "not a label value"),
    ({"annotations": {"kubetune.io/accepted-spec": "{}"}}, "spec.pod.annotations", "kubetune's"),
    ({"volumes": []}, "spec.pod.volumes", "unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("pod", "path", "message"), REFUSED_JOB)
def test_refused_spec_pod_names_the_field(pod: dict, path: str, message: str):
    with pytest.raises(InvalidSpecError) as info:
        parse_job(job_with(pod), by_name=False)
    errors = info.value.errors
    assert len(errors) == 1, errors
    assert errors[0].path == path, errors[0]
    assert message in errors[0].message, errors[0]


def test_the_defaults_file_used_by_the_tests_is_valid():
    d = load_trainer_defaults(ROOT / "tests/operator/trainer-defaults.yaml")
    assert d.gpu_resource_name == "nvidia.com/mig-3g.40gb"
    assert d.cache is not None and d.cache.persistent_volume_claim is not None
    assert parse_trainer_defaults(None).gpu_resource_name == "nvidia.com/gpu"


def mount(path: str) -> dict:
    return {"volumes": [{"name": "v", "emptyDir": {}}],
            "volumeMounts": [{"name": "v", "mountPath": path}]}  # fmt: skip


REFUSED_DEFAULTS = [
    ({"env": [env("KUBETUNE_NNODES")]}, "env", "is set by kubetune"),
    ({"env": [env("RANK")]}, "env", "is set by kubetune"),
    ({"env": [env("HF_HOME")]}, "env", "is set by kubetune"),
    (mount("/tmp"), "volumeMounts[0].mountPath", "would hide /tmp"),
    (mount("/tmp/x"), "volumeMounts[0].mountPath", "would hide /tmp"),
    (mount("/cache"), "volumeMounts[0].mountPath", "the /cache volume is `cache:`"),
    (mount("/dev/shm"), "volumeMounts[0].mountPath", "would hide /dev"),
    (mount("/etc"), "volumeMounts[0].mountPath", "would hide /etc/kubetune"),
    (mount("/"), "volumeMounts[0].mountPath", "would hide /tmp"),
    (mount("/data/../tmp"), "volumeMounts[0].mountPath", "normalized absolute path"),
    (mount("data"), "volumeMounts[0].mountPath", "normalized absolute path"),
    ({"volumes": [{"name": "cache", "emptyDir": {}}]}, "volumes[0].name", "kubetune's own"),
    ({"volumes": [{"name": "v"}]}, "volumes[0]", "exactly one of"),
    ({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, "volumes[0].hostPath",
     "unknown field"),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/data"}]}, "",
     "volumeMounts[0]: no volume named 'nope'"),
    ({"cache": {}}, "cache", "exactly one of persistentVolumeClaim, nfs or emptyDir"),
    ({"gpuResourceName": "gpu"}, "gpuResourceName", "needs a vendor prefix"),
    ({"gpuResourceName": "cpu"}, "gpuResourceName", "not an extended resource name"),
    ({"gpuResourceName": "kubernetes.io/gpu"}, "gpuResourceName", "extended resource"),
    ({"extraResources": {"nvidia.com/gpu": "1"}}, "", "is the GPU resource"),
    ({"extraResources": {"rdma/ib": "lots"}}, "extraResources", "not a Kubernetes quantity"),
    ({"labels": {"kubetune.io/attempt": "1"}}, "labels", "kubetune's own"),
    ({"nodeSelector": {"pool": "a b"}}, "nodeSelector", "not a label value"),
    ({"tolerations": [{"operator": "Equal"}]}, "tolerations[0]", "needs `operator: Exists`"),
    ({"affinity": {"nodeAffinity": {"required": {}}}}, "affinity", "unknown key(s) required"),
    ({"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone",
      "whenUnsatisfiable": "DoNotSchedule"}]}, "topologySpreadConstraints[0].maxSkew",
     "greater than or equal to 1"),
    ({"imagePullSecrets": ["regcred"]}, "imagePullSecrets[0]", ""),
    ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy", "IfNotPresent"),
    ({"serviceAccountName": "Admin"}, "serviceAccountName", "not a DNS label"),
    ({"image": "x"}, "image", "unknown field; allowed here: affinity, annotations"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "path", "message"), REFUSED_DEFAULTS)
def test_refused_defaults_name_the_field(data: dict, path: str, message: str):
    with pytest.raises(TrainerDefaultsError) as info:
        parse_trainer_defaults(data, "defaults.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    prefix = f"defaults.yaml: {path}: " if path else "defaults.yaml: "
    assert lines[0].startswith(prefix), lines[0]
    assert message in lines[0], lines[0]


def test_platform_may_set_what_a_job_may_not():
    d = parse_trainer_defaults({"env": [env("LD_LIBRARY_PATH"), env("NCCL_IB_HCA")]})
    assert [v.name for v in d.env] == ["LD_LIBRARY_PATH", "NCCL_IB_HCA"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("env: [\n", "not valid YAML"), ("- a\n", "must be a mapping"),
     ("a: 1\n---\nb: 2\n", "expected one YAML document")],
)  # fmt: skip
def test_unreadable_defaults_file(tmp_path: Path, text: str, message: str):
    f = tmp_path / "d.yaml"
    f.write_text(text)
    with pytest.raises(TrainerDefaultsError, match=message):
        load_trainer_defaults(f)
    with pytest.raises(TrainerDefaultsError, match="cannot read"):
        load_trainer_defaults(tmp_path / "missing.yaml")


def test_an_empty_defaults_file_means_no_defaults(tmp_path: Path):
    f = tmp_path / "empty.yaml"
    f.write_text("# trainerDefaults: {}\n")
    assert load_trainer_defaults(f) == parse_trainer_defaults({})


def test_operations_doc_lists_every_default_and_reserved_name():
    from kubetune_api.pod import PLATFORM_ONLY_ENV, RESERVED_ENV
    from kubetune_api.trainer_defaults import TrainerDefaults

    doc = (ROOT / "docs/operations.md").read_text()
    section = doc.split("## Configure for your cluster", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert {f.alias for f in TrainerDefaults.model_fields.values()} <= rows
    for name in sorted(RESERVED_ENV | PLATFORM_ONLY_ENV):
        assert f"`{name}`" in section, name
