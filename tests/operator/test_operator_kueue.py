"""Kueue with the real operator against the API emulator (Kueue itself played through the API,
as job_play.py plays the Job controller): the priority-class label reaches the Job, and an
admitted multi-node Job that Kueue evicts again (waitForPodsReady: not every pod became ready
in time) sends the FineTuneJob back to Pending without a restart or a new attempt.
"""

from __future__ import annotations

from kubetune_api import constants as c
from tests.support.kube.cluster import FTJ, EmulatorServer, wait_for
from tests.support.kube.job_play import create_pods, set_running
from tests.support.kube.operator import NS, load_ftj, status

JOBS = "batch/v1/jobs"
QUEUED = {"queueName": "ml-team"}


def queued_ftj(**labels: str) -> dict:
    doc = load_ftj(runPolicy=QUEUED)
    doc["metadata"].setdefault("labels", {}).update(labels)
    return doc


def test_priority_class_label_is_passed_to_the_job(operator: EmulatorServer) -> None:
    cluster = operator
    cluster.create(FTJ, queued_ftj(**{c.LABEL_KUEUE_PRIORITY: "ml-high", "team": "nlp"}))
    job = wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    labels = job["metadata"]["labels"]
    assert labels[c.LABEL_KUEUE_PRIORITY] == "ml-high"
    assert labels[c.LABEL_KUEUE_QUEUE] == "ml-team" and job["spec"]["suspend"] is True
    assert "team" not in labels  # only what Kueue reads is passed on


def test_an_eviction_by_wait_for_pods_ready_requeues_without_a_restart(
    operator: EmulatorServer,
) -> None:
    cluster = operator
    cluster.create(FTJ, queued_ftj())
    wait_for(lambda: cluster.get(JOBS, NS, "llama-lora-a1"), what="the Job")
    wait_for(lambda: "Kueue" in status(cluster).get("message", ""), what="queued")
    # Kueue admits the 2-node Job; one pod runs, the other never gets a node.
    cluster.patch(JOBS, NS, "llama-lora-a1", {"spec": {"suspend": False}})
    pods = create_pods(cluster, NS, "llama-lora-a1")
    set_running(cluster, NS, pods[0], "127.0.0.1")
    wait_for(lambda: status(cluster).get("phase") == "Running", what="Running")
    # waitForPodsReady's timeout: Kueue suspends the Job again, the Job controller deletes
    # its pods, and the workload waits in the queue for the next admission.
    cluster.patch(JOBS, NS, "llama-lora-a1", {"spec": {"suspend": True}})
    for pod in pods:
        cluster.delete("v1/pods", NS, pod["metadata"]["name"])
    st = wait_for(
        lambda: (s := status(cluster)).get("phase") == "Pending" and "Kueue" in s["message"] and s,
        what="back in the queue",
    )
    assert (st["attempt"], st["restarts"], st.get("preemptions", 0)) == (1, 0, 0)
    assert [j["metadata"]["name"] for j in cluster.list(JOBS, NS)] == ["llama-lora-a1"]
    # Admitted again, all pods run: the same attempt continues.
    cluster.patch(JOBS, NS, "llama-lora-a1", {"spec": {"suspend": False}})
    for pod in create_pods(cluster, NS, "llama-lora-a1"):
        set_running(cluster, NS, pod, "127.0.0.1")
    st = wait_for(lambda: (s := status(cluster)).get("phase") == "Running" and s, what="Running")
    assert (st["attempt"], st["restarts"]) == (1, 0)
