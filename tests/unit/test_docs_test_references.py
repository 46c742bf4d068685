"""Every test a doc names as the proof of a protection exists (docs cite `path::name`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "examples" / "README.md"])
# `tests/x/test_y.py::test_z` (optionally `[param]`); a `::name` right after a cited path in
# the same cell continues that file.
REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?(?:\[[^\]]*\])?`|`::(\w+)(?:\[[^\]]*\])?`")


def references() -> list[tuple[str, str, str | None]]:
    refs = []
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            current = None
            for m in REF.finditer(line):
                if m.group(1):
                    current = m.group(1)
                    refs.append((doc.name, current, m.group(2)))
                elif current:
                    refs.append((doc.name, current, m.group(3)))
    return refs


@pytest.mark.parametrize(("doc", "path", "name"), references())
def test_cited_test_exists(doc: str, path: str, name: str | None) -> None:
    file = ROOT / path
    assert file.is_file(), f"{doc} cites {path}, which does not exist"
    if name:
        assert re.search(rf"^(?:async )?def {name}\(", file.read_text(), re.M), (
            f"{doc} cites {path}::{name}, which does not exist"
        )


def test_the_security_table_is_found() -> None:
    assert sum(1 for d, _, _ in references() if d == "operations.md") >= 30
