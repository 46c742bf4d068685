"""deploy/kueue: the queue objects refer to each other, and the queued FineTuneJob example is
valid and becomes a suspended Job labelled for its LocalQueue (what the docs promise)."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubetune_api import load_job
from kubetune_api.constants import LABEL_KUEUE_PRIORITY, LABEL_KUEUE_QUEUE
from kubetune_operator.builders import Owner, build_job
from tests.support.chart.helpers import REPO, run

QUEUES = REPO / "deploy/kueue/queues.yaml"
QUEUED_JOB = REPO / "deploy/kueue/finetunejob-queued.yaml"


def by_kind() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(QUEUES.read_text()):
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_queue_objects_refer_to_each_other() -> None:
    objs = by_kind()
    assert {d["apiVersion"] for ds in objs.values() for d in ds} == {"kueue.x-k8s.io/v1beta1"}
    flavors = {f["metadata"]["name"] for f in objs["ResourceFlavor"]}
    (cluster_queue,) = objs["ClusterQueue"]
    for group in cluster_queue["spec"]["resourceGroups"]:
        for flavor in group["flavors"]:
            assert flavor["name"] in flavors
            assert {r["name"] for r in flavor["resources"]} == set(group["coveredResources"])
    (local_queue,) = objs["LocalQueue"]
    assert local_queue["spec"]["clusterQueue"] == cluster_queue["metadata"]["name"]


def test_queued_job_is_created_suspended_with_the_queue_label(
    kubernetes_validate: str, tmp_path: Path
) -> None:
    job = load_job(QUEUED_JOB)
    (local_queue,) = by_kind()["LocalQueue"]
    assert job.spec.run_policy.queue_name == local_queue["metadata"]["name"]
    assert job.metadata.namespace == local_queue["metadata"]["namespace"]

    owner = Owner(name=job.metadata.name, namespace=local_queue["metadata"]["namespace"], uid="u1")
    batch_job = build_job(job, owner, attempt=1)
    assert batch_job["spec"]["suspend"] is True
    assert batch_job["metadata"]["labels"][LABEL_KUEUE_QUEUE] == "ml-team"
    # The FineTuneJob's priority class is the Job's: one of the WorkloadPriorityClasses.
    (priority,) = by_kind()["WorkloadPriorityClass"]
    assert batch_job["metadata"]["labels"][LABEL_KUEUE_PRIORITY] == priority["metadata"]["name"]
    # Kueue counts parallelism x pod requests against the quota.
    assert batch_job["spec"]["parallelism"] == job.spec.distributed.nodes == 2
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(batch_job))
    proc = run([kubernetes_validate, "--strict", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_job_labels_are_exactly_kubetunes_plus_kueues() -> None:
    """Exact labels of a queued Job with a priority; other FineTuneJob labels stay behind."""
    job = load_job(QUEUED_JOB)
    job.metadata.labels["team"] = "support"
    owner = Owner(name=job.metadata.name, namespace=job.metadata.namespace, uid="u1")
    assert build_job(job, owner, attempt=3)["metadata"]["labels"] == {
        "app.kubernetes.io/name": "kubetune",
        "app.kubernetes.io/instance": "support-bot-queued",
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/managed-by": "kubetune-operator",
        "kubetune.io/job": "support-bot-queued",
        "kubetune.io/attempt": "3",
        "kueue.x-k8s.io/queue-name": "ml-team",
        "kueue.x-k8s.io/priority-class": "ml-high",
    }
    del job.metadata.labels[LABEL_KUEUE_PRIORITY]
    assert LABEL_KUEUE_PRIORITY not in build_job(job, owner, attempt=3)["metadata"]["labels"]


def test_wait_for_pods_ready_is_documented_for_multi_node_jobs() -> None:
    """docs/operations.md shows the Kueue setting, as Kueue's Configuration spells it."""
    doc = (REPO / "docs/operations.md").read_text()
    section = doc.split("## Queueing with Kueue", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    (config,) = [c for c in map(yaml.safe_load, blocks) if c.get("kind") == "Configuration"]
    assert config["kind"] == "Configuration"
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta1"
    wait = config["waitForPodsReady"]
    assert wait["enable"] is True and wait["blockAdmission"] is True
    assert "priority-class" in section and "WorkloadPriorityClass" in section
