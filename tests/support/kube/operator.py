"""Fixtures (a pytest plugin, loaded by tests/conftest.py): the API emulator with the real CRD
and the running operator; FineTuneJob manifests from tests/operator/*.yaml."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from kubetune_operator.config import OperatorConfig
from tests.support.kube.cluster import EmulatorServer, run_operator

HERE = Path(__file__).resolve().parents[2] / "operator"  # the FineTuneJob manifests
NS = "team-a"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path) as c:
        c.apply_crd()
        c.create_namespace(NS)
        yield c


@pytest.fixture
def operator(cluster: EmulatorServer) -> Iterator[EmulatorServer]:
    with run_operator(
        cluster,
        namespaces=[NS],
        config=OperatorConfig(
            reconcile_interval=0.5,
            status_interval=0.5,
            metrics_port=None,
            image="registry.test/trainer:1",
        ),
    ):
        yield cluster


def op_metric(cluster: EmulatorServer, name: str, **labels: str) -> float:
    """One of the running operator's own metrics (0 before it exists)."""
    memo: kopf.Memo = cluster.op_memo
    metrics = memo.get("metrics") if memo is not None else None
    if metrics is None:
        return 0.0
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


def reconciles(cluster: EmulatorServer) -> float:
    """How many reconciles the running operator has finished."""
    return op_metric(cluster, "kubetune_reconcile_seconds_count")


def load_ftj(name: str = "ftj-basic.yaml", **overrides: Any) -> dict[str, Any]:
    """A FineTuneJob from tests/operator/*.yaml, with spec sections merged over it."""
    doc = yaml.safe_load((HERE / name).read_text())
    doc = copy.deepcopy(doc)
    for key, value in overrides.items():
        if key == "name":
            doc["metadata"]["name"] = value
        elif isinstance(value, dict):
            doc["spec"].setdefault(key, {}).update(value)
        else:
            doc["spec"][key] = value
    return doc
