"""`kubetune validate` and `kubetune crd` as a user runs them: a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kubetune(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_examples_validate() -> None:
    files = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))
    proc = kubetune("validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(files)


def test_invalid_file_reports_every_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kubetune.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: bad}\n"
        "spec:\n  model: {base: builtin:tiny-llama}\n"
        "  dataset: {source: d.jsonl, format: qa}\n"
        "  adapter: {r: 0, dropout: 1.5}\n  output: {uri: 'ftp://x/y'}\n"
    )
    good = ROOT / "examples" / "finance-qa.yaml"
    proc = kubetune("validate", str(good), str(bad))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(bad))]
    assert any("spec.adapter.r:" in ln for ln in lines)
    assert any("spec.adapter.dropout:" in ln for ln in lines)
    assert any("spec.output.uri:" in ln and "ftp" in ln for ln in lines)
    assert "1 of 2 file(s) invalid" in proc.stderr


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    proc = kubetune("validate", str(broken), str(tmp_path / "nope.yaml"))
    assert proc.returncode == 1
    assert "not valid YAML/JSON" in proc.stderr
    assert "cannot read file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_crd_command_prints_committed_crd() -> None:
    proc = kubetune("crd")
    assert proc.returncode == 0
    assert proc.stdout == (ROOT / "crds" / "finetunejobs.kubetune.io.yaml").read_text()


def test_a_directory_is_reported_like_an_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    good = ROOT / "examples" / "finance-qa.yaml"
    proc = kubetune("validate", str(folder), str(good))
    assert proc.returncode == 1, proc.stderr  # not click's usage error (2)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{folder}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"{folder}: cannot read"), proc.stderr
    assert "directory" in lines[0]
    assert "Usage:" not in proc.stderr and "Traceback" not in proc.stderr
    assert "1 of 2 file(s) invalid" in proc.stderr
