"""Scenario: a FineTuneJob deleted and re-created with the same name (issue 18).

cleanupPolicy retain keeps the first incarnation's checkpoints under the same run prefix.
The operator passes metadata.uid to the trainer (KUBETUNE_JOB_UID); the new incarnation
(another uid) must not continue the old one's checkpoints: it trains from step 0 and the
old checkpoints are moved aside, still committed, under superseded/<old uid>/.
"""

from __future__ import annotations

import pytest

from tests.support.e2e.world import FTJ, World
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]


def test_recreated_job_does_not_resume_the_previous_incarnation(world: World) -> None:
    name = "recreated"

    def manifest() -> dict:
        m = world.load("long-run.yaml", name, METRICS_PORT=free_port(), CLEANUP="retain")
        m["spec"]["training"].update(maxSteps=10, saveSteps=5)
        return m

    world.submit(manifest())
    first = world.succeeded(name)
    assert first["progress"]["step"] == 10, first
    old_uid = world.ftj(name)["metadata"]["uid"]
    assert world.committed_steps(name) == [5, 10]
    world.cluster.delete(FTJ, world.namespace, name)
    world.wait_until(lambda: world.ftj(name) is None, 120, "the FineTuneJob to go", name)

    world.submit(manifest())  # the very same spec and data: only the uid differs
    new_uid = world.ftj(name)["metadata"]["uid"]
    assert new_uid != old_uid
    second = world.succeeded(name)
    assert second["attempt"] == 1 and second["progress"]["step"] == 10, second
    (pod,) = world.pods_of(name, 1)
    log = world.log_of(pod["metadata"]["name"])
    assert "resuming from" not in log and "already reached" not in log, log[-3000:]
    assert f"earlier FineTuneJob of this name (uid {old_uid})" in log, log[-3000:]
    # Trained anew: its own checkpoints, each recording the new uid.
    assert world.committed_steps(name) == [5, 10]
    state = world.s3_json(world.run_prefix(name) + "checkpoints/step-000010/kubetune_state.json")
    assert state["job_uid"] == new_uid
    # The first incarnation's checkpoints are kept, committed, beside the run.
    aside = world.run_prefix(name) + f"superseded/{old_uid}/checkpoints/"
    manifests = [k for k in world.s3_keys(aside) if k.endswith("/MANIFEST.json")]
    assert [k[len(aside) :] for k in manifests] == [
        "step-000005/MANIFEST.json",
        "step-000010/MANIFEST.json",
    ]
    world.assert_no_canary()
