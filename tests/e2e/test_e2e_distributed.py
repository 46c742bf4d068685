"""Scenarios 2 and 3: two nodes through torchrun's rendezvous, and the DPO example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubetune_api import constants as c
from tests.support.e2e.world import World
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.in_image  # pods run inside the built trainer image (tests/e2e/README.md)
def test_two_nodes_one_process_each(world: World) -> None:
    name = "two-nodes"
    world.submit(world.load("two-nodes.yaml", name, METRICS_PORT=free_port()))
    st = world.succeeded(name)
    assert st["restarts"] == 0 and st["attempt"] == 1, st
    assert st["progress"]["step"] == 8, st

    pods = world.pods_of(name, 1)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    rank0, rank1 = (world.terminated(p) for p in pods)
    assert rank0["exitCode"] == 0 and rank1["exitCode"] == 0, (rank0, rank1)
    # Only world rank 0 writes the summary (and every artifact).
    assert json.loads(rank0["message"])["phase"] == "done", rank0
    assert not rank1.get("message"), rank1

    # Each pod ran torchrun as its node of two, both dialling pod 0's rendezvous endpoint
    # (the Service's DNS name resolved to the loopback address, on the Job's port).
    logs = [world.log_of(p["metadata"]["name"]) for p in pods]
    endpoints = set()
    for node, log in enumerate(logs):
        line = next((x for x in log.splitlines() if "kubetune launch: node" in x), "")
        assert f"node {node}/2" in line and "--nnodes 2" in line, log[-3000:]
        endpoints.add(line.split("--rdzv-endpoint ")[1].split()[0])
    assert len(endpoints) == 1 and next(iter(endpoints)).startswith("127.0.0.1:"), endpoints

    # S3 holds one set of artifacts, written by rank 0 alone: one adapter, one report, the
    # tokenized-data cache, and each checkpoint exactly the files its manifest lists (node 1's
    # RNG state reaches rank 0 over the process group and is committed by it: no file of
    # node 1's own upload).
    prefix = world.run_prefix(name)
    keys = world.s3_keys(prefix)
    tops = {k[len(prefix) :].split("/")[0] for k in keys}
    assert tops <= {"adapter", "checkpoints", "report", "registry", "data-cache"}, tops
    caches = {k[len(prefix) :].split("/")[1] for k in keys if "/data-cache/" in k}
    assert len(caches) <= 1, caches  # prepared once, by rank 0, for both nodes
    weights = [k for k in keys if k.startswith(prefix + "adapter/") and ".safetensors" in k]
    assert weights == [prefix + "adapter/adapter_model.safetensors"], keys
    assert [k for k in keys if k.endswith("report.json")] == [prefix + "report/report.json"]
    committed = world.committed_steps(name)
    assert committed, keys
    for step in committed:
        ckpt = f"{prefix}checkpoints/step-{step:06d}/"
        listed = set(world.s3_json(ckpt + "MANIFEST.json")["files"])
        stored = {k[len(ckpt) :] for k in keys if k.startswith(ckpt)} - {"MANIFEST.json"}
        assert stored == listed, (step, sorted(stored ^ listed))
    # Only rank 0 committed, uploaded and reported; node 1 trained and said nothing of it.
    assert "committed to s3://" in logs[0] and "adapter: s3://" in logs[0], logs[0][-3000:]
    assert "committed to s3://" not in logs[1] and "adapter: s3://" not in logs[1], logs[1][-3000:]
    world.assert_no_canary()


def test_two_nodes_lost_node_is_a_counted_restart(world: World) -> None:
    """A node dies (SIGKILL): the attempt fails as a whole, the next one resumes on two
    nodes from the last commit, and the loss is counted as a restart, not a preemption —
    even though the Job controller then stops the surviving pod with SIGTERM."""
    name = "lost-node"
    job = world.load("two-nodes.yaml", name, METRICS_PORT=free_port())
    job["spec"]["dataset"]["maxExamples"] = 96  # longer epochs: fewer epoch-end commits
    job["spec"]["training"].update(maxSteps=40, saveSteps=10)
    job["spec"]["runPolicy"] = {"maxRestarts": 2, "backoffSeconds": 1}
    world.submit(job)
    world.wait_until(lambda: world.committed_steps(name), 180, "the first commit", name)
    _, node1 = world.pods_of(name, 1)
    world.kubelet.kill(node1["metadata"]["name"])

    st = world.succeeded(name)
    assert st["restarts"] == 1 and st["preemptions"] == 0 and st["attempt"] == 2, (
        st,
        [e["message"] for e in world.events(name)],
    )
    assert st["progress"]["step"] == 40, st
    rank0 = world.pods_of(name, 2)[0]
    assert "resuming from s3://" in world.log_of(rank0["metadata"]["name"])
    world.assert_no_canary()


def test_dpo_example(world: World) -> None:
    """examples/preference-dpo.yaml with only what a CPU-only box and this cluster need."""
    name = "preference-dpo"
    doc = yaml.safe_load((ROOT / "examples" / "preference-dpo.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": world.namespace}
    spec = doc["spec"]
    spec["model"]["base"] = "builtin:tiny-llama"
    spec["quantization"] = {"mode": "none"}
    spec["resources"] = {"gpusPerNode": 0, "memory": "4Gi"}
    spec["dataset"].update(source=f"s3://{world.bucket}/data/rated.jsonl", maxSeqLength=128)
    spec["training"].update(
        maxSteps=6, microBatchSize=2, gradientAccumulation=1, saveSteps=3, loggingSteps=1
    )
    spec["evaluation"] = {"maxSamples": 2, "generation": {"maxNewTokens": 8}}
    spec.pop("tracking")  # the example's in-cluster MLflow does not exist here
    spec["output"].update(uri=f"s3://{world.bucket}/runs", s3Endpoint=world.s3.endpoint)
    assert spec["output"]["credentialsSecret"] == "s3-credentials"  # the example's own Secret
    spec["metrics"] = {"port": free_port()}
    spec["runPolicy"] = {"maxRestarts": 0}
    world.submit(doc)

    st = world.succeeded(name)
    assert st["progress"]["step"] == 6 and st["restarts"] == 0, st
    prefix = world.run_prefix(name)
    keys = world.s3_keys(prefix)
    assert prefix + "adapter/adapter_model.safetensors" in keys, keys
    report = world.s3_json(prefix + "report/report.json")
    assert report["objective"] == "dpo" and report["results"]["steps"] == 6, report
    (pod,) = world.pods_of(name, 1)
    assert "objective dpo" in world.log_of(pod["metadata"]["name"])
    assert c.Reason.COMPLETED in [e["reason"] for e in world.events(name)]
    world.assert_no_canary()
