"""The watch cache keeps only what observe() reads (cache.py): same observation from the
trimmed copies as from the full objects, at a fraction of the memory."""

from __future__ import annotations

import json

import pytest

from kubetune_api.loader import parse_spec
from kubetune_operator import builders
from kubetune_operator.cache import Written, child_key, trim_job, trim_pod
from kubetune_operator.handlers import view
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.observe import observe, pod_index
from tests.support.kube.operator import NS, load_ftj

TERM = {"exitCode": 137, "reason": "OOMKilled", "message": json.dumps({"message": "oom"})}


def _job_and_pods(pod_status: dict, job_status: dict) -> tuple[dict, list[dict]]:
    parsed = parse_spec(load_ftj()["spec"], "llama-lora", NS)
    job = builders.build_job(parsed, builders.Owner("llama-lora", NS, "u1"), 1, image="img")
    job["metadata"].update(uid="job-uid", resourceVersion="7", managedFields=[{"x": "y" * 500}])
    job["status"] = job_status
    tmpl = job["spec"]["template"]
    pods = [
        {
            "metadata": {
                "name": f"p{i}",
                "uid": f"pod-{i}",
                "labels": {**tmpl["metadata"]["labels"], "controller-uid": "job-uid"},
                "annotations": {
                    "batch.kubernetes.io/job-completion-index": str(i),
                    "other": "z" * 500,
                },
                "ownerReferences": [{"uid": "job-uid", "kind": "Job", "name": "x"}],
            },
            "spec": tmpl["spec"],
            "status": {**pod_status, "podIP": f"10.0.0.{i}", "startTime": "t", "qosClass": "G"},
        }
        for i in range(2)
    ]
    return job, pods


@pytest.mark.parametrize(
    ("pod_status", "job_status"),
    [
        ({"phase": "Running"}, {"active": 2}),
        ({"phase": "Failed", "containerStatuses": [{"state": {"terminated": TERM}}]}, {}),
        (
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "node pressure",
                "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "E"}],
            },
            {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "PodFailurePolicy",
                        "message": "Pod team-a/p0 has condition DisruptionTarget matching",
                    }
                ]
            },
        ),
        ({"phase": "Succeeded"}, {"conditions": [{"type": "Complete", "status": "True"}]}),
    ],
)
def test_trimmed_objects_observe_the_same(pod_status, job_status):
    job, pods = _job_and_pods(pod_status, job_status)
    small_job, small_pods = trim_job(job), [trim_pod(p) for p in pods]
    assert observe(small_job, small_pods) == observe(job, pods)
    full = len(json.dumps([job, *pods]))
    assert len(json.dumps([small_job, *small_pods])) < full / 4  # no spec, template, fields
    assert "spec" not in small_pods[0] and "managedFields" not in small_job["metadata"]
    assert child_key(NS, job["metadata"]["labels"]) == (NS, "llama-lora", "1")


def test_our_last_write_wins_until_the_watch_shows_it():
    written = Written()
    body = {"metadata": {"resourceVersion": "5"}, "status": {"phase": "Pending"}}
    written.remember(
        NS, "a", {"metadata": {"resourceVersion": "6"}, "status": {"phase": "Running"}}
    )
    assert written.fresh_status(NS, "a", body)["phase"] == "Running"
    body = {"metadata": {"resourceVersion": "6"}, "status": {"phase": "Running"}}
    assert written.fresh_status(NS, "a", body)["phase"] == "Running"
    assert written.ftjs == {}  # caught up: our copy is dropped


def test_a_deleted_job_leaves_no_series_in_the_operator_metrics():
    m = OperatorMetrics()
    m.set_phase(NS, "a", "Running")
    m.set_phase(NS, "b", "Running")
    m.restarts.labels(NS, "a", "retryable").inc()
    assert m.registry.get_sample_value("kubetune_jobs", {"phase": "Running"}) == 2
    m.set_phase(NS, "a", "Failed")
    m.set_phase(NS, "a", None)
    assert m.registry.get_sample_value("kubetune_jobs", {"phase": "Running"}) == 1
    assert m.registry.get_sample_value("kubetune_jobs", {"phase": "Failed"}) == 0
    labels = {"namespace": NS, "job": "a", "reason": "retryable"}
    assert m.registry.get_sample_value("kubetune_job_restarts_total", labels) is None


def test_the_phase_timestamp_is_one_series_per_job_with_its_current_phase():
    m = OperatorMetrics()
    name = "kubetune_job_phase_timestamp_seconds"
    m.set_phase(NS, "a", "Pending", (100.0, ""))
    m.set_phase(NS, "a", "Running", (200.0, "PodsRunning"))
    m.set_phase(NS, "b", "Failed", (300.0, "OutOfMemory"))
    samples = {
        tuple(sorted(s.labels.items())): s.value
        for family in m.registry.collect()
        for s in family.samples
        if s.name == name
    }
    running = {"namespace": NS, "finetunejob": "a", "phase": "Running", "reason": "PodsRunning"}
    failed = {"namespace": NS, "finetunejob": "b", "phase": "Failed", "reason": "OutOfMemory"}
    assert samples == {tuple(sorted(running.items())): 200.0, tuple(sorted(failed.items())): 300.0}
    m.set_phase(NS, "a", None)  # deleted: its series goes
    assert m.registry.get_sample_value(name, running) is None
    assert m.registry.get_sample_value(name, failed) == 300.0


def test_trimmed_objects_keep_only_the_labels_read():
    job, pods = _job_and_pods({"phase": "Running"}, {"active": 2})
    assert trim_job(job)["metadata"]["labels"] == {}  # filed by the index's key
    pod = pods[0]
    pod["metadata"]["labels"].update(
        {"batch.kubernetes.io/controller-uid": "job-uid", "team": "nlp"}
    )
    pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] = "0"
    del pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
    del pod["metadata"]["ownerReferences"]  # belongs to its Job by the controller's label
    small = trim_pod(pod)
    assert small["metadata"]["labels"] == {
        "controller-uid": "job-uid",
        "batch.kubernetes.io/controller-uid": "job-uid",
        "batch.kubernetes.io/job-completion-index": "0",
    }
    assert view.pod_of(small, "job-uid") and pod_index(small) == "0"


def test_trimmed_pods_keep_only_the_conditions_and_container_states_read():
    kubelet_status = {
        "phase": "Failed",
        "conditions": [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "t0"}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
        ]
        + [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": "preempted",
                "lastTransitionTime": "t1",
            },
        ],
        "containerStatuses": [
            {
                "name": "trainer",
                "image": "registry.test/trainer:1",
                "imageID": "sha256:" + "a" * 64,
                "containerID": "containerd://" + "b" * 64,
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": {**TERM, "startedAt": "t0", "finishedAt": "t1"}},
                "lastState": {"running": {"startedAt": "t0"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
    }
    job, pods = _job_and_pods(kubelet_status, {"failed": 1})
    small = trim_pod(pods[0])
    assert small["status"] == {
        "phase": "Failed",
        "podIP": "10.0.0.0",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": "preempted",
            },
        ],
        "containerStatuses": [{"state": {"terminated": TERM}}],
    }
    assert observe(job, [trim_pod(p) for p in pods]) == observe(job, pods)
    waiting = {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
    job, pods = _job_and_pods({"phase": "Pending", **waiting}, {"active": 2})
    assert observe(job, [trim_pod(p) for p in pods]) == observe(job, pods)
    assert trim_pod(pods[0])["status"]["containerStatuses"] == waiting["containerStatuses"]
