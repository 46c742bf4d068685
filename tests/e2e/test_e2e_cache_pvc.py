"""The platform's trainer defaults back /cache with a PVC, so the quantized base survives a
failed attempt: attempt 1 quantizes and saves it, attempt 2 (after a SIGKILL) reads it back.

The real operator process reads `--trainer-defaults`; the kubelet stand-in keeps one folder
per claim across pods, as a PersistentVolume would (an emptyDir is a fresh folder per pod).
"""

from __future__ import annotations

import pytest

from tests.support.e2e.world import World
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(300)]
DEFAULTS = """\
cache:
  persistentVolumeClaim: {claimName: kubetune-cache}
env:
  - {name: NCCL_DEBUG, value: WARN}
"""
SAVED, READ = "quantized base: saved to", "quantized base: reading the cached copy"


def test_quantized_base_on_the_cache_pvc_survives_a_failed_attempt(world: World) -> None:
    defaults = world.workdir / "trainer-defaults.yaml"
    defaults.write_text(DEFAULTS)
    world.operator.stop()
    world.operator.extra_args += ["--trainer-defaults", str(defaults)]
    world.operator.start()

    name = "cached"
    job = world.load("long-run.yaml", name, METRICS_PORT=free_port())
    job["spec"]["quantization"] = {"mode": "4bit", "computeDtype": "fp32"}
    job["spec"]["training"]["maxSteps"] = 20  # killed after step 10's checkpoint
    world.submit(job)
    world.wait_until(lambda: world.committed_steps(name), 180, "the first checkpoint", name)
    (pod,) = world.pods_of(name, 1)
    assert pod["spec"]["volumes"][3] == {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": "kubetune-cache", "readOnly": False},
    }
    first = world.log_of(pod["metadata"]["name"])
    assert SAVED in first and READ not in first, first[-3000:]
    # It is on the claim (the kubelet stand-in's folder for it), not in the pod's own files.
    claim = world.kubelet.workdir / "claims" / "kubetune-cache"
    assert [p.name for p in (claim / "kubetune" / "quantized").iterdir()], claim
    world.kubelet.kill(pod["metadata"]["name"])

    st = world.succeeded(name)
    assert st["attempt"] == 2 and st["restarts"] == 1, st
    (pod2,) = world.pods_of(name, 2)
    second = world.log_of(pod2["metadata"]["name"])
    assert READ in second and SAVED not in second, second[-3000:]
    world.assert_no_canary()
