"""Pure builders: FineTuneJob + metadata -> ConfigMap, headless Service, Indexed Job."""

from __future__ import annotations

import json

from kubetune_api import constants as c
from kubetune_api.loader import parse_job
from kubetune_operator import DEFAULT_IMAGE
from kubetune_operator import builders as b
from tests.support.kube.operator import OWNER, load_ftj


def job_for(**overrides: object) -> dict:
    return b.build_job(parse_job(load_ftj(**overrides)), OWNER, 3, deadline_remaining=None)


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_indexed_job_shape():
    job = job_for()
    spec = job["spec"]
    assert job["metadata"]["name"] == "llama-lora-a3"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["backoffLimit"] == 0 and spec["suspend"] is False
    assert "activeDeadlineSeconds" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    # The Failed condition names permanent exit codes first, then a disruption.
    rules = spec["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailJob", "FailJob"]
    assert rules[0]["onExitCodes"] == {
        "containerName": container(job)["name"],
        "operator": "In",
        "values": [64, 65, 66, 73],
    }
    assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert spec["template"]["spec"]["subdomain"] == "llama-lora-a3"
    ref = job["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "name": "llama-lora",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = job["metadata"]["labels"]
    assert labels[c.LABEL_JOB] == "llama-lora" and labels[c.LABEL_ATTEMPT] == "3"
    assert labels[c.LABEL_NAME] == "kubetune" and labels[c.LABEL_INSTANCE] == "llama-lora"
    assert spec["template"]["metadata"]["labels"] == {**labels}


def test_container_command_env_and_resources():
    ctr = container(job_for())
    assert ctr["image"] == DEFAULT_IMAGE and ctr["image"].endswith(":0.1.0")
    # The image's ENTRYPOINT (tini -- kubetune) must stay PID 1: only args are set.
    assert "command" not in ctr and ctr["args"] == ["launch"]
    env = {e["name"]: e["value"] for e in ctr["env"]}
    assert env[c.Env.SPEC_FILE] == "/etc/kubetune/finetunejob.json"
    assert env[c.Env.NAMESPACE] == "team-a" and env[c.Env.JOB_NAME] == "llama-lora"
    assert env[c.Env.JOB_UID] == "uid-1"  # the trainer resumes only this incarnation's run
    assert env[c.Env.ATTEMPT] == "3"
    assert (env[c.Env.NNODES], env[c.Env.NPROC_PER_NODE]) == ("2", "2")
    assert env[c.Env.MASTER_ADDR] == "llama-lora-a3-0.llama-lora-a3"
    assert env[c.Env.MASTER_PORT] == "29500" and env[c.Env.RDZV_TIMEOUT] == "600"
    assert env[c.Env.METRICS_PORT] == "9400"
    assert env[c.Env.S3_ENDPOINT] == "http://minio.storage.svc:9000"
    assert env[c.Env.TERMINATION_LOG] == c.TERMINATION_LOG_PATH
    # Every cache on the /cache volume (a PVC keeps the quantized base across attempts).
    assert env[c.Env.CACHE] == "/cache/kubetune" and env["HF_HOME"] == "/cache/huggingface"
    # Credentials only by reference, never as values.
    assert ctr["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert not any("SECRET" in k or "KEY" in k for k in env)
    res = ctr["resources"]
    assert res["requests"] == {
        "cpu": "8",
        "memory": "64Gi",
        "nvidia.com/gpu": "2",
        "ephemeral-storage": "50Gi",
    }
    assert res["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "2"}
    assert ctr["terminationMessagePath"] == "/dev/termination-log"
    assert ctr["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {p["name"]: p["containerPort"] for p in ctr["ports"]} == {"rdzv": 29500, "metrics": 9400}


def test_volumes_and_restricted_security_context():
    job = job_for()
    pod = job["spec"]["template"]["spec"]
    ctr = container(job)
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["spec"]["configMap"]["name"] == "llama-lora-spec"
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    # The writable volumes are bounded on the node's disk (the root filesystem is read-only).
    assert vols["tmp"]["emptyDir"] == {"sizeLimit": "10Gi"}
    assert vols["cache"]["emptyDir"] == {"sizeLimit": "200Gi"}
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
    assert mounts["/etc/kubetune"]["readOnly"] is True
    assert {"/dev/shm", "/tmp", "/cache"} <= set(mounts)
    sc = ctr["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False


def test_placement():
    pod = job_for()["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["priorityClassName"] == "training" and pod["serviceAccountName"] == "trainer"


def test_cpu_only_job_has_no_gpu_and_own_image():
    job = job_for(
        resources={"gpusPerNode": 0, "gpuType": None, "image": "my/trainer:dev"},
        distributed={"nodes": 1, "processesPerNode": 1},
    )
    ctr = container(job)
    assert "nvidia.com/gpu" not in ctr["resources"]["requests"]
    assert ctr["image"] == "my/trainer:dev"
    assert "nvidia.com/gpu.product" not in job["spec"]["template"]["spec"]["nodeSelector"]


def test_kueue_and_deadline():
    job = b.build_job(
        parse_job(load_ftj(runPolicy={"queueName": "gpu-queue"})), OWNER, 1, deadline_remaining=12.7
    )
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "gpu-queue"
    assert job["spec"]["activeDeadlineSeconds"] == 12


def test_service_and_configmap():
    ftj = parse_job(load_ftj())
    svc = b.build_service(ftj, OWNER, 2)
    assert svc["metadata"]["name"] == "llama-lora-a2"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert svc["spec"]["selector"] == {c.LABEL_JOB: "llama-lora", c.LABEL_ATTEMPT: "2"}
    written = load_ftj()["spec"]
    cm = b.build_configmap(ftj, OWNER, written)
    data = json.loads(cm["data"][c.SPEC_FILE_NAME])
    assert data["metadata"] == {"name": "llama-lora", "namespace": "team-a"}
    # Defaults are resolved, so the trainer reads exactly what the operator validated.
    assert (
        data["spec"]["adapter"]["r"] == 16 and data["spec"]["output"]["cleanupPolicy"] == "retain"
    )
    assert parse_job(data).spec == ftj.spec
    # The accepted spec is the one as written (no defaults), and only for its own owner.
    assert b.accepted_spec(cm, OWNER.uid) == written != data["spec"]
    assert b.accepted_spec(cm, "uid-of-an-earlier-job") is None
    assert b.accepted_spec(None, OWNER.uid) is None
    # Edited by hand into something unreadable: no accepted spec, not a traceback.
    for raw in ("{not json", "[1, 2]"):
        cm["metadata"]["annotations"][b.ACCEPTED_SPEC] = raw
        assert b.accepted_spec(cm, OWNER.uid) is None


def test_single_node_job_needs_no_service():
    """One node: no subdomain and no KUBETUNE_MASTER_ADDR (its ranks meet on 127.0.0.1, the
    trainer's default); more than one: pod 0's name through the attempt's Service."""
    from kubetune_trainer.distributed.contract import read_launch_env

    one = parse_job(load_ftj(distributed={"nodes": 1}))
    two = parse_job(load_ftj(distributed={"nodes": 2}))
    assert not b.needs_service(one) and b.needs_service(two)
    pod = b.build_job(one, OWNER, 1, deadline_remaining=None)["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    assert "subdomain" not in pod and c.Env.MASTER_ADDR not in env
    assert read_launch_env(env, one).master_addr == "127.0.0.1"
    pod = b.build_job(two, OWNER, 1, deadline_remaining=None)["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    assert pod["subdomain"] == b.service_name(OWNER.name, 1)
    launch = read_launch_env({**env, "JOB_COMPLETION_INDEX": "1"}, two)
    assert launch.master_addr == "llama-lora-a1-0.llama-lora-a1"


def test_builders_are_pure():
    ftj = parse_job(load_ftj())
    assert b.build_job(ftj, OWNER, 1) == b.build_job(ftj, OWNER, 1)
    assert ftj == parse_job(load_ftj())
