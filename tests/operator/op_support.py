"""Fixtures: the emulator with the real CRD, FineTuneJob manifests, the running operator."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_cluster import EmulatorServer, run_operator

from kubetune_operator.config import OperatorConfig

HERE = Path(__file__).parent
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
            reconcile_interval=0.5, metrics_port=None, image="registry.test/trainer:1"
        ),
    ):
        yield cluster


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
