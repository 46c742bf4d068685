"""The operator's PodDisruptionBudget (only with standbys) and the chart README (`helm show
readme`): every value in values.yaml is documented there, and the table is current."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from tests.support.chart.files import CHART_README, chart_readme, values_docs, values_keys
from tests.support.chart.helpers import CHART, find, one, run

Render = Callable[..., object]


def test_no_pdb_for_a_single_replica(render: Render) -> None:
    assert not find(render(None), "PodDisruptionBudget")
    assert not find(render(None, "replicaCount=1", "podDisruptionBudget.enabled=true"),
                    "PodDisruptionBudget")  # fmt: skip


def test_pdb_with_standbys_selects_exactly_the_operator_pods(render: Render) -> None:
    manifests = render(None, "replicaCount=2")
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    deployment = one(manifests, "Deployment")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_pdb_values(render: Render) -> None:
    spec = one(render(None, "replicaCount=3", "podDisruptionBudget.minAvailable=2",
                      "podDisruptionBudget.unhealthyPodEvictionPolicy="),
               "PodDisruptionBudget")["spec"]  # fmt: skip
    assert spec["minAvailable"] == 2 and "maxUnavailable" not in spec
    assert "unhealthyPodEvictionPolicy" not in spec
    spec = one(render(None, "replicaCount=2", "podDisruptionBudget.minAvailable=50%"),
               "PodDisruptionBudget")["spec"]  # fmt: skip
    assert spec["minAvailable"] == "50%"
    assert not find(render(None, "replicaCount=2", "podDisruptionBudget.enabled=false"),
                    "PodDisruptionBudget")  # fmt: skip


BAD_PDB = ["podDisruptionBudget.minAvailable=half",
           "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_PDB)
def test_pdb_values_are_checked(helm: str, bad: str) -> None:
    proc = run([helm, "template", "kt", str(CHART), "--set", bad], check=False)
    assert proc.returncode != 0 and bad.split("=")[0] in proc.stderr


def leaves(keys: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The values themselves: key paths with nothing under them."""
    return [k for k in keys if not any(o[: len(k)] == k and len(o) > len(k) for o in keys)]


def owner(key: tuple[str, ...], documented: set[str]) -> str | None:
    """The documented row that covers `key`: itself, or the closest documented map above it."""
    for n in range(len(key), 0, -1):
        if ".".join(key[:n]) in documented:
            return ".".join(key[:n])
    return None


def test_helm_show_readme_documents_every_value(helm: str) -> None:
    readme = run([helm, "show", "readme", str(CHART)]).stdout
    assert readme.startswith("# kubetune Helm chart")
    text = (CHART / "values.yaml").read_text()
    documented = {key for key, _, _ in values_docs(text)}
    table = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}
    assert set(table) == documented
    for key in leaves(values_keys(yaml.safe_load(text))):
        # A value is a row, or sits under a documented map whose default spells it out.
        row = owner(key, documented)
        assert row is not None, f"values.yaml key {'.'.join(key)} has no row in the chart README"
        assert row == ".".join(key) or f'"{key[-1]}"' in table[row], key


def test_every_value_has_a_description() -> None:
    """Every key has its own `# --` comment or sits under a documented map (a default like
    `resources`); an undocumented map is only a prefix, each key under it documented."""
    text = (CHART / "values.yaml").read_text()
    documented = {key for key, _, _ in values_docs(text)}
    keys = values_keys(yaml.safe_load(text))
    for key in leaves(keys):
        assert owner(key, documented), f"{'.'.join(key)} has no # -- comment"


def test_the_values_table_is_current() -> None:
    current = CHART_README.read_text()
    assert current == chart_readme(current), (
        "charts/kubetune/README.md is stale: run "
        "PATH=.venv/bin:$PATH .venv/bin/python -m tests.support.chart.files"
    )


def test_readme_links_the_network_policy_ports() -> None:
    text = CHART_README.read_text()
    assert "../../docs/operations.md#network-policies" in text
    assert "8080" in text and "9400" in text
