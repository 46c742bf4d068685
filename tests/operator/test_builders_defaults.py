"""The platform's trainer defaults (--trainer-defaults, the chart's `trainerDefaults`) and a
job's spec.pod, rendered by the pure builders: exact manifests for defaults and overrides.

Each expected manifest is the one without defaults (test_builders.py pins that) with every
difference spelled out here, so anything else a setting changed would fail the equality."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubetune_api.loader import parse_job
from kubetune_api.trainer_defaults import TrainerDefaults, load_trainer_defaults
from kubetune_operator import builders as b
from tests.support.kube.operator import HERE, load_ftj

OWNER = b.Owner(name="llama-lora", namespace="team-a", uid="uid-1")
DEFAULTS_FILE = HERE / "trainer-defaults.yaml"
ATTEMPT_PODS = {"kubetune.io/job": "llama-lora", "kubetune.io/attempt": "3"}


def defaults() -> TrainerDefaults:
    return load_trainer_defaults(DEFAULTS_FILE)


def build(doc: dict[str, Any], d: TrainerDefaults | None = None) -> dict[str, Any]:
    job = parse_job(doc)
    if d is None:
        return b.build_job(job, OWNER, 3)
    return b.build_job(job, OWNER, 3, defaults=d)


def bare_ftj(**resources: Any) -> dict[str, Any]:
    """ftj-basic without its own placement, so the platform's shows through."""
    doc = load_ftj()
    for key in ("nodeSelector", "tolerations", "priorityClassName", "serviceAccountName"):
        doc["spec"]["resources"].pop(key)
    doc["spec"]["resources"].update(resources)
    return doc


def test_platform_defaults_exact_manifest():
    doc = bare_ftj()
    plain = build(doc)
    got = build(doc, defaults())
    expected = copy.deepcopy(plain)
    labels = {"cost-center": "ml-platform", "team": "shared", **plain["metadata"]["labels"]}
    expected["metadata"]["labels"] = labels
    tmpl = expected["spec"]["template"]
    tmpl["metadata"] = {
        "labels": {"cost-center": "ml-platform", "team": "shared", **tmpl["metadata"]["labels"]},
        "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    }
    pod = tmpl["spec"]
    ctr = pod["containers"][0]
    ctr["imagePullPolicy"] = "Always"
    ctr["env"] += [
        {"name": "NCCL_SOCKET_IFNAME", "value": "eth0"},
        {"name": "NCCL_DEBUG", "value": "WARN"},
        {"name": "LD_LIBRARY_PATH", "value": "/opt/aws-ofi-nccl/lib"},
    ]
    # The platform's source first: the job's own credentials Secret wins a shared key.
    ctr["envFrom"] = [{"configMapRef": {"name": "cluster-proxy"}}, *ctr["envFrom"]]
    gpus = {"rdma/ib": "1", "nvidia.com/mig-3g.40gb": "2"}
    for part in ("requests", "limits"):
        del ctr["resources"][part]["nvidia.com/gpu"]
        ctr["resources"][part].update(gpus)
    ctr["volumeMounts"].append({"name": "datasets", "mountPath": "/data", "readOnly": True})
    pod["volumes"][3] = {"name": "cache", "persistentVolumeClaim": {
        "claimName": "kubetune-cache", "readOnly": False}}  # fmt: skip
    pod["volumes"].append({"name": "datasets", "persistentVolumeClaim": {
        "claimName": "shared-datasets", "readOnly": True}})  # fmt: skip
    pod["nodeSelector"] = {
        "pool": "a100",
        "cloud.example.com/zone-group": "west",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    pod["tolerations"] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "node.kubernetes.io/instance-type", "operator": "In",
            "values": ["p4d.24xlarge"]}]}]}}}  # fmt: skip
    # No selector given: it spreads this attempt's pods.
    pod["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": ATTEMPT_PODS}}]  # fmt: skip
    pod["priorityClassName"] = "batch-low"
    pod["serviceAccountName"] = "trainer"
    pod["imagePullSecrets"] = [{"name": "regcred"}]
    assert got == expected


def test_job_refines_the_defaults_exact_manifest():
    doc = load_ftj(pod={
        "env": [
            {"name": "NCCL_DEBUG", "value": "INFO"},  # overrides the platform's, in place
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        ],
        "envFrom": [{"secretRef": {"name": "wandb"}, "prefix": "WANDB_"}],
        "labels": {"team": "nlp", "experiment": "e42"},
        "annotations": {"example.com/owner": "ada"},
    })  # fmt: skip
    # The job's own placement: spec.resources wins over the platform's.
    doc["spec"]["resources"]["nodeSelector"] = {"pool": "h100"}
    got = build(doc, defaults())
    base = build(bare_ftj(), defaults())
    tmpl = got["spec"]["template"]
    ctr, pod = tmpl["spec"]["containers"][0], tmpl["spec"]
    assert ctr["env"][-4:] == [
        {"name": "NCCL_SOCKET_IFNAME", "value": "eth0"},
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": "LD_LIBRARY_PATH", "value": "/opt/aws-ofi-nccl/lib"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]
    assert ctr["env"][:-4] == base["spec"]["template"]["spec"]["containers"][0]["env"][:-3]
    assert ctr["envFrom"] == [
        {"configMapRef": {"name": "cluster-proxy"}},
        {"prefix": "WANDB_", "secretRef": {"name": "wandb"}},
        {"secretRef": {"name": "s3-creds"}},
    ]
    own = b.labels(OWNER, 3)
    assert tmpl["metadata"] == {
        "labels": {"cost-center": "ml-platform", "team": "nlp", "experiment": "e42", **own},
        "annotations": {
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
            "example.com/owner": "ada",
        },
    }
    assert got["metadata"]["labels"] == tmpl["metadata"]["labels"]
    assert pod["nodeSelector"] == {
        "pool": "h100",
        "cloud.example.com/zone-group": "west",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    # The same toleration from both is listed once; the job's own priority and account win.
    assert pod["tolerations"] == base["spec"]["template"]["spec"]["tolerations"]
    assert (pod["priorityClassName"], pod["serviceAccountName"]) == ("training", "trainer")
    # Nothing else differs from the platform-only pod.
    for key in ("volumes", "affinity", "topologySpreadConstraints", "imagePullSecrets"):
        assert pod[key] == base["spec"]["template"]["spec"][key], key


def test_gpu_resource_names_and_a_cpu_only_pod():
    for name in ("nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu"):
        d = TrainerDefaults.model_validate({"gpuResourceName": name, "gpuTypeLabel": "gpu/kind"})
        pod = build(load_ftj(), d)["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"] == {
            "requests": {"cpu": "8", "memory": "64Gi", "ephemeral-storage": "50Gi", name: "2"},
            "limits": {"memory": "64Gi", name: "2"},
        }
        assert pod["nodeSelector"] == {"pool": "gpu", "gpu/kind": "NVIDIA-A100-SXM4-80GB"}
    # extraResources (RDMA) only go with GPUs: a CPU job asks for neither.
    cpu_job = load_ftj(resources={"gpusPerNode": 0}, distributed={"processesPerNode": 1})
    del cpu_job["spec"]["resources"]["gpuType"]
    ctr = build(cpu_job, defaults())["spec"]["template"]["spec"]["containers"][0]
    assert ctr["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi", "ephemeral-storage": "50Gi"},
        "limits": {"memory": "64Gi"},
    }


def test_spread_constraint_with_its_own_selector_is_kept():
    rule = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["kubetune.io/attempt"],
            "labelSelector": {"matchLabels": {"kubetune.io/job": "x"}}}  # fmt: skip
    d = TrainerDefaults.model_validate({"topologySpreadConstraints": [rule]})
    pod = build(load_ftj(), d)["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [rule]


def test_cache_emptydir_and_nfs():
    d = TrainerDefaults.model_validate({"cache": {"emptyDir": {"sizeLimit": "500Gi"}}})
    vols = build(load_ftj(), d)["spec"]["template"]["spec"]["volumes"]
    assert vols[3] == {"name": "cache", "emptyDir": {"sizeLimit": "500Gi"}}
    d = TrainerDefaults.model_validate({"cache": {"nfs": {"server": "nfs.local", "path": "/c"}}})
    vols = build(load_ftj(), d)["spec"]["template"]["spec"]["volumes"]
    assert vols[3] == {"name": "cache", "nfs": {"server": "nfs.local", "path": "/c",
                                                 "readOnly": False}}  # fmt: skip


def test_configmap_carries_spec_pod_and_the_trainer_reads_it_back():
    doc = load_ftj(pod={"env": [{"name": "A", "value": "1"}], "labels": {"x": "y"}})
    job = parse_job(doc)
    cm = b.build_configmap(job, OWNER, doc["spec"])
    manifest = json.loads(cm["data"]["finetunejob.json"])
    assert manifest["spec"]["pod"] == {
        "env": [{"name": "A", "value": "1"}], "envFrom": [], "labels": {"x": "y"},
        "annotations": {},
    }  # fmt: skip
    assert parse_job(manifest, by_name=False).spec.pod == job.spec.pod
