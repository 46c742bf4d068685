"""kubernetes-validate (the API's own OpenAPI schemas, strict) over every rendered manifest.

It knows built-in kinds and CustomResourceDefinitions, not custom objects: the
prometheus-operator kinds (ServiceMonitor, PodMonitor, PrometheusRule) are skipped by it with
a warning, and the test checks that nothing else is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.chart.helpers import REPO, SCENARIOS, Manifests, scenario_id, validate

Render = Callable[..., Manifests]

# Custom kinds kubernetes-validate has no schema for (not part of Kubernetes itself).
UNKNOWN_TO_IT = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest it knows.
VERSIONS = ("1.29", None)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v or "latest")
@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_rendered_manifests_validate(
    kubernetes_validate: str,
    render: Render,
    tmp_path: Path,
    values: Path | None,
    version: str | None,
) -> None:
    manifests = render(values, crds=True)
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    proc = validate(kubernetes_validate, path, version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    passed = set(re.findall(r"passed for resource (\S+)/(\S+) against", out))
    skipped = set(re.findall(r"Couldn't find schema for kind (\w+)", out))
    assert skipped <= UNKNOWN_TO_IT, out
    expected = {
        (m["kind"].lower(), m["metadata"]["name"])
        for m in manifests
        if m["kind"] not in UNKNOWN_TO_IT
    }
    assert passed == expected, out


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("crds/finetunejobs.kubetune.io.yaml", "customresourcedefinition/finetunejobs.kubetune.io"),
        ("deploy/argocd/argocd-cm.yaml", "configmap/argocd-cm"),
    ],
)
def test_shipped_manifests_validate(kubernetes_validate: str, path: str, resource: str) -> None:
    proc = validate(kubernetes_validate, REPO / path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"passed for resource {resource} " in proc.stdout


def test_validator_is_not_a_rubber_stamp(
    kubernetes_validate: str, render: Render, tmp_path: Path
) -> None:
    """The same check fails on a broken Deployment, so a pass above means something."""
    (deployment,) = [m for m in render() if m["kind"] == "Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "one"
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = validate(kubernetes_validate, path, None)
    assert proc.returncode != 0
    assert "replicas" in proc.stdout + proc.stderr
