"""Shared by the fuzz corpus generators: the Case type, the examples, dict helpers.

A Case is an id, a thunk that makes the file's bytes (built when the case runs, so
collecting hundreds of cases costs nothing), the file suffix, and whether the file must be
refused (True), must be accepted (False) or may be either (None: e.g. a wrong type that
happens to be right for that field).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SEED = 18  # the number: change it to explore, keep it to reproduce


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], bytes]
    suffix: str = ".yaml"
    invalid: bool | None = True


def examples() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in EXAMPLES:
        text = path.read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
        out.append((path.stem, text, docs[0]))
    return out


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path, node


def mappings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        yield path
        for k, v in node.items():
            yield from mappings(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from mappings(v, (*path, i))


def set_at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def get_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def short_path(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)[-40:]


# Values of the wrong type for most fields; None where the field's own type is unknown.
