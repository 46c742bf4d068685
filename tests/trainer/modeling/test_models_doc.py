"""docs/models.md names real tests: every `file.py::test_name` it lists exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
REF = re.compile(r"`((?:tests/[\w/]+/)?(test_\w+\.py))::(test_\w+)`")


def test_every_test_named_in_docs_models_exists() -> None:
    text = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    refs = REF.findall(text)
    assert len(refs) >= 14  # the family table and the GPU table
    for path, name, func in refs:
        file = REPO / path if path.startswith("tests/") else REPO / "tests/trainer/modeling" / name
        assert file.is_file(), path
        assert re.search(rf"^def {func}\(", file.read_text(), re.MULTILINE), f"{path}::{func}"
