"""The Helm chart with the real helm: lint, render every scenario, and check what it renders."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kubetune_api import __version__
from tests.support.chart.helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    Manifests,
    find,
    one,
    operator_options,
    run,
    scenario_id,
)

Render = Callable[..., Manifests]
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CI = CHART / "ci"


def chart_meta() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def test_app_version_is_the_kubetune_version() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert chart_meta()["appVersion"] == __version__ == pyproject["project"]["version"]


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_helm_lint_strict(helm: str, values: Path | None) -> None:
    cmd = [helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        cmd += ["--values", str(values)]
    out = run(cmd).stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_every_scenario_renders_valid_names_and_labels(render: Render, values: Path | None) -> None:
    manifests = render(values)
    assert manifests
    for m in manifests:
        meta = m["metadata"]
        where = f"{m['kind']}/{meta['name']}"
        # Names of every kind here are DNS-1123 labels (<= 63), the CRD's being a subdomain.
        if m["kind"] != "CustomResourceDefinition":
            assert len(meta["name"]) <= 63 and DNS_1123.match(meta["name"]), where
        for key, value in meta.get("labels", {}).items():
            assert isinstance(value, str) and len(value) <= 63, f"{where}: label {key}={value!r}"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, where
        assert meta["labels"]["app.kubernetes.io/part-of"] == "kubetune", where


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_operator_deployment_is_restricted(render: Render, values: Path | None) -> None:
    deployment = one(render(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    options = operator_options(deployment)
    assert options.metrics_port == ports["metrics"]
    assert options.liveness_port == ports["health"]
    assert pod["serviceAccountName"] == one(render(values), "ServiceAccount")["metadata"]["name"]


def test_images_default_to_the_app_version(render: Render) -> None:
    deployment = one(render(), "Deployment")
    app_version = chart_meta()["appVersion"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/kubetune/operator:{app_version}"
    assert operator_options(deployment).image == f"ghcr.io/kubetune/trainer:{app_version}"


def test_digest_and_trainer_tag_overrides(render: Render) -> None:
    deployment = one(render(CI / "cluster-wide-values.yaml"), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/kubetune/operator@sha256:" + "0" * 64
    assert operator_options(deployment).image == "ghcr.io/kubetune/trainer:0.1.0-cu128"
    assert deployment["spec"]["replicas"] == 2


def test_trainer_image_digest_reaches_the_trainer_pods(render: Render) -> None:
    from kubetune_api.loader import parse_job
    from kubetune_operator import builders as b

    digest = "sha256:" + "1" * 64
    deployment = one(render(CI / "namespaced-values.yaml"), "Deployment")
    image = operator_options(deployment).image
    assert image == f"ghcr.io/kubetune/trainer@{digest}"
    # A digest wins over a tag, as for the operator image.
    both = one(render(None, f"trainer.image.digest={digest}", "trainer.image.tag=x"), "Deployment")
    assert operator_options(both).image == image
    # ... and is what the trainer pods run (a job without spec.resources.image).
    ftj = yaml.safe_load((REPO / "tests/operator/ftj-basic.yaml").read_text())
    owner = b.Owner(name="llama-lora", namespace="team-a", uid="u")
    job = b.build_job(parse_job(ftj), owner, 1, image=image, deadline_remaining=None)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == image
    # A FineTuneJob may pin its own image by digest too (spec.resources.image).
    pinned = f"registry.example.com/team/trainer@{digest}"
    ftj["spec"].setdefault("resources", {})["image"] = pinned
    job = b.build_job(parse_job(ftj), owner, 1, image=image, deadline_remaining=None)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == pinned


def test_metrics_service_selects_the_operator_and_not_the_test_pod(render: Render) -> None:
    manifests = render()
    service = one(manifests, "Service")
    selector = service["spec"]["selector"]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    test_pod = one(manifests, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert not selector.items() <= test_pod["metadata"]["labels"].items()
    # The test pod fetches exactly this Service's /metrics.
    script = test_pod["spec"]["containers"][0]["command"][-1]
    port = service["spec"]["ports"][0]["port"]
    assert f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/metrics" in script
    assert test_pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_cluster_wide_mode(render: Render) -> None:
    manifests = render()
    assert len(find(manifests, "ClusterRole")) == 1
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(manifests, "ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE,
        }
    ]
    # Namespaced objects: only leader election's Role, in the release namespace.
    assert {(m["kind"], m["metadata"]["namespace"]) for m in watch_roles(manifests)} == set()
    options = operator_options(one(manifests, "Deployment"))
    assert options.all_namespaces and not options.namespace
    assert not options.standalone
    assert (options.lease.namespace, options.lease.name) == (NAMESPACE, f"{RELEASE}-kubetune")


def watch_roles(manifests: Manifests) -> list[dict]:
    """The Roles and RoleBindings of the watched namespaces (not leader election's)."""
    return [
        m
        for kind in ("Role", "RoleBinding")
        for m in find(manifests, kind)
        if not m["metadata"]["name"].endswith("-leader-election")
    ]


def test_namespaced_mode(render: Render) -> None:
    manifests = render(CI / "namespaced-values.yaml")
    # Cluster-wide only kopf's read-only discovery (CRDs, namespaces); all writes are in Roles.
    (cluster_role,) = find(manifests, "ClusterRole")
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in cluster_role["rules"])
    assert len(find(manifests, "ClusterRoleBinding")) == 1
    roles = {m["metadata"]["namespace"] for m in watch_roles(manifests) if m["kind"] == "Role"}
    bindings = find(manifests, "RoleBinding")
    assert (
        roles
        == {b["metadata"]["namespace"] for b in bindings} - {NAMESPACE}
        == {
            "team-a",
            "team-b",
        }
    )
    sa = one(manifests, "ServiceAccount")["metadata"]
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}
        ]
        assert b["roleRef"]["kind"] == "Role"
    options = operator_options(one(manifests, "Deployment"))
    assert not options.all_namespaces and options.namespace == ["team-a", "team-b"]
    # The deliberately long fullnameOverride is cut, suffixes included.
    assert one(manifests, "Service")["metadata"]["name"].endswith("-metrics")
    # crds.enabled=false: no FineTuneJob CRD from the templates.
    assert not find(manifests, "CustomResourceDefinition")


def test_namespaced_mode_defaults_to_the_release_namespace(render: Render) -> None:
    manifests = render(None, "watch.clusterWide=false")
    roles = [m for m in watch_roles(manifests) if m["kind"] == "Role"]
    assert [r["metadata"]["namespace"] for r in roles] == [NAMESPACE]


def test_monitoring_objects(render: Render) -> None:
    manifests = render(CI / "monitoring-values.yaml")
    service_monitor = one(manifests, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert "honorLabels" not in service_monitor["spec"]["endpoints"][0]  # not needed any more
    assert (
        service_monitor["spec"]["selector"]["matchLabels"].items()
        <= one(manifests, "Service")["metadata"]["labels"].items()
    )
    pod_monitor = one(manifests, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "kubetune.io/job", "operator": "Exists"}
    ]
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}

    (dashboard,) = find(manifests, "ConfigMap", "kt-kubetune-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((REPO / "deploy/grafana/kubetune-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["kubetune-dashboard.json"]) == shipped

    rule = one(manifests, "PrometheusRule")
    shipped_rules = yaml.safe_load((REPO / "deploy/prometheus/kubetune-rules.yaml").read_text())
    assert rule["spec"] == shipped_rules


def test_monitoring_is_off_by_default(render: Render) -> None:
    kinds = {m["kind"] for m in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not find(render(), "ConfigMap", "kt-kubetune-dashboard")


def test_crd_template_equals_the_generated_crd(render: Render) -> None:
    generated = yaml.safe_load((REPO / "crds/finetunejobs.kubetune.io.yaml").read_text())
    # files/ holds a symlink, so the chart cannot carry a stale copy.
    link = CHART / "files/finetunejobs.kubetune.io.yaml"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "crds/finetunejobs.kubetune.io.yaml").resolve()
    (crd,) = find(render(), "CustomResourceDefinition", "finetunejobs.kubetune.io")
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"]
    assert generated["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = find(render(None, "crds.keep=false"), "CustomResourceDefinition")
    assert unkept and all("annotations" not in c["metadata"] for c in unkept)


def crd_names(manifests: Manifests) -> set[str]:
    return {m["metadata"]["name"] for m in find(manifests, "CustomResourceDefinition")}


def test_every_crd_is_behind_crds_enabled(render: Render) -> None:
    # No crds/ directory: Helm installs it whatever the values say.
    assert not (CHART / "crds").exists()
    assert crd_names(render()) == {"finetunejobs.kubetune.io"}
    # --include-crds too: crds.enabled=false leaves every CRD to whoever installs them.
    for values in (None, CI / "namespaced-values.yaml"):
        off = render(values, "crds.enabled=false", crds=True)
        assert not find(off, "CustomResourceDefinition")


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_nothing_of_kopf_peering_is_rendered(render: Render, values: Path | None) -> None:
    # HA is a Lease: the release owns no kopf.dev CRD, object or rule, so another kopf
    # operator installed with Helm keeps its peering CRDs (issue 20).
    text = yaml.safe_dump_all(render(values, crds=True))
    assert "kopf.dev" not in text and "peering" not in text.lower()


@pytest.mark.parametrize(
    "bad",
    [
        "watch.clusterWide=maybe",
        "image.pullPolicy=Sometimes",
        "operator.metricsPort=80",
        "watch.namespaces[0]=Not_A_Namespace",
        "unknownKey=1",
        "metrics.serviceMonitor.interval=soon",
        "image.digest=sha256:short",
        "trainer.image.digest=latest",
        "leaderElection.leaseDurationSeconds=fast",
        "networkPolicy.prometheus.podSelector=app",
    ],
)
def test_values_schema_rejects_bad_values(helm: str, bad: str) -> None:
    proc = run([helm, "template", RELEASE, str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr.lower(), proc.stderr


def _notes(helm: str, tmp: Path, *sets: str) -> str:
    """NOTES.txt as Helm renders it for this release.

    Helm 3's `helm install --dry-run=client` still needs a cluster (helm/helm#13144) and
    `helm template` drops NOTES.txt; so a copy of the chart renders it through `tpl` into a
    ConfigMap, with the same values, release and named templates.
    """
    chart = tmp / "kubetune"
    if not chart.exists():
        shutil.copytree(CHART, chart)  # follows the files/ symlinks
        (chart / "templates/NOTES.txt").rename(chart / "files/notes.txt")
        (chart / "templates/zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
            'data: {notes: {{ tpl (.Files.Get "files/notes.txt") . | toJson }}}\n'
        )
    cmd = [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE,
           "--show-only", "templates/zz-notes.yaml"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    return yaml.safe_load(run(cmd).stdout)["data"]["notes"]


def test_notes_print_the_next_commands(helm: str, tmp_path: Path) -> None:
    notes = _notes(helm, tmp_path)
    assert notes.startswith(f"kubetune {chart_meta()['appVersion']} is installed in namespace")
    # A flow that works as printed: the example's own namespace and Secret, applied as is
    # (kubectl -n X apply of a file naming another namespace is refused).
    assert "kubectl -n finance create secret generic s3-credentials" in notes
    assert "  kubectl apply -f examples/finance-qa.yaml\n" in notes
    assert "kubectl -n finance get ftj -w" in notes
    example = yaml.safe_load((REPO / "examples" / "finance-qa.yaml").read_text())
    assert example["metadata"]["namespace"] == "finance"
    assert example["spec"]["output"]["credentialsSecret"] == "s3-credentials"
    assert "serves only" not in notes
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-kubetune-metrics 8080:8080" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "crds.enabled=false" not in notes
    namespaced = _notes(helm, tmp_path, "watch.clusterWide=false", "watch.namespaces={ml,research}")
    assert "The operator serves only ml, research: add finance to watch.namespaces" in namespaced
    assert "serves FineTuneJobs in: ml, research" in namespaced
    no_crds = _notes(helm, tmp_path, "crds.enabled=false")
    assert "kubectl apply -f crds/finetunejobs.kubetune.io.yaml" in no_crds
    assert "kopf-peering" not in no_crds


def test_every_value_is_documented_in_one_style() -> None:
    """Each value in values.yaml has a `# --` comment above it. A documented mapping (e.g.
    `resources`) documents its whole default; an undocumented one is a section whose keys
    carry their own comments."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    top_level = set()
    covered_below: int | None = None  # indent of a documented mapping being skipped
    for i, line in enumerate(lines):
        key = re.match(r"^( *)([A-Za-z]\w*):(.*)$", line)
        if not key:
            continue
        indent, name, rest = len(key.group(1)), key.group(2), key.group(3)
        if covered_below is not None and indent > covered_below:
            continue
        covered_below = None
        if indent == 0:
            top_level.add(name)
        j = i - 1  # a comment may span lines: find its first one
        while j >= 0 and lines[j].lstrip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        documented = j >= 0 and lines[j].lstrip().startswith("# --") and j < i
        is_section = rest.strip() == ""
        if documented and is_section:
            covered_below = indent
        assert documented or is_section, f"values.yaml: {name!r} (line {i + 1}) is undocumented"
    # Every top-level value is known to the schema (which rejects unknown keys).
    assert top_level <= set(schema["properties"]), sorted(top_level - set(schema["properties"]))
