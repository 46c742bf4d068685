"""docs/reference.md is generated from the models, committed, and names every field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune_api.crd import build_crd
from kubetune_api.reference import reference_markdown

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"


def test_committed_reference_matches_models() -> None:
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/reference.md drifted from kubetune_api: run `make docs`"
    )


def _paths(node: dict[str, Any], path: str) -> list[str]:
    """Every field path of a CRD schema node, as the reference writes it (lists as `[]`)."""
    out: list[str] = []
    for key, child in node.get("properties", {}).items():
        out.append(f"{path}.{key}")
        out += _paths(child, f"{path}.{key}")
    if "items" in node:
        out += _paths(node["items"], f"{path}[]")
    return out


def _crd_schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]


def _rows() -> dict[str, list[str]]:
    """field path -> its table cells, from the committed file."""
    rows: dict[str, list[str]] = {}
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def test_every_spec_and_status_field_has_a_row() -> None:
    # Walked from the CRD schema (a second derivation), not from the generator's own walk.
    schema = _crd_schema()
    expected = _paths(schema["spec"], "spec") + _paths(schema["status"], "status")
    assert len(expected) > 100
    rows = _rows()
    missing = [p for p in expected if p not in rows]
    assert not missing, f"not in docs/reference.md: {missing}"
    extra = [p for p in rows if p.startswith(("spec.", "status.")) and p not in expected]
    assert not extra, f"in docs/reference.md but not in the CRD: {extra}"


def test_rows_carry_descriptions_defaults_and_ranges() -> None:
    rows = _rows()
    assert all(len(cells) == 4 for cells in rows.values()), "a row has the wrong cell count"
    assert all(cells[3] for cells in rows.values()), "a field has no description"
    # default_factory defaults (absent from the JSON schema) come from the models.
    assert rows["spec.adapter.targetModules"][1] == "`[q_proj, v_proj]`"
    assert rows["spec.model.base"][1] == "**required**"
    assert rows["spec.training.learningRate"][2] == "0 < x ≤ 1"
    assert rows["spec.quantization.mode"][2] == "`none`, `8bit`, `4bit`"
    # YAML would read a bare on/off as a boolean: the reference shows them quoted.
    assert "`'on'`" in rows["spec.training.gradientCheckpointing"][2]


def test_cli_prints_committed_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer.cli", "reference"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == REFERENCE.read_text()


def test_reference_import_stays_light() -> None:
    code = "import sys, kubetune_api.reference; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert not loaded & {"torch", "kopf", "kubernetes", "transformers"}
