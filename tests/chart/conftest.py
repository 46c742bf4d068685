"""Session fixtures for the deployment checks: one per real tool, and the chart renderer."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.support.chart.helpers import CHART, NAMESPACE, RELEASE, Manifests, find_tool, run


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session", params=["lua5.1", "lua5.4"])
def lua(request: pytest.FixtureRequest) -> str:
    """Argo CD runs health checks in gopher-lua, i.e. Lua 5.1 semantics: every Lua test runs
    under Debian's lua5.1 (what Argo CD's runtime implements) and lua5.4 (newer semantics)."""
    return find_tool(request.param)


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return find_tool("kubernetes-validate")


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., Manifests]:
    """render(values_file=None, *sets, crds=False) -> the chart's manifests as dicts."""

    @cache
    def _render(values: Path | None = None, *sets: str, crds: bool = False) -> Manifests:
        cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if values is not None:
            cmd += ["--values", str(values)]
        for s in sets:
            cmd += ["--set", s]
        if crds:
            cmd.append("--include-crds")
        out = run(cmd).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    return _render
