"""Bounded YAML/JSON loading: a spec file is untrusted input, read as the API server reads it.

Every limit is checked on the event stream, before any Python object is built, so a hostile
file costs at most its first few thousand events:
- size: at most MAX_DOCUMENT_BYTES bytes are read;
- nesting: at most MAX_DEPTH collections deep (deep flow nesting is quadratic in libyaml and
  the recursive composer overflows the C stack);
- anchors/aliases are accepted (kubectl accepts them) but every alias counts as the whole
  value it stands for: at most MAX_NODES expanded nodes and MAX_DOCUMENT_BYTES expanded
  characters per file (aliases cannot make a file bigger than the size limit), and an alias
  inside its own anchor is refused. A "billion laughs" bomb stops at the limit instead of
  being expanded (by a later JSON dump, say).
- keys: scalar strings only, no duplicates (PyYAML silently keeps the last one);
- numbers as the API server reads them: `1e-4` is a float (YAML 1.1 reads it as a string),
  integers must fit int64, `.inf`/`.nan` are refused (JSON cannot hold them); no timestamps
  (`2024-01-01` stays a string), only the JSON-compatible tags.
JSON files go through the same path (JSON is YAML) with the same limits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, NoReturn

import yaml

# etcd stores objects of at most 1.5 MiB by default; a FineTuneJob is a few KB. 2 MiB leaves
# room for comments and several jobs in one file and still bounds the work per file.
MAX_DOCUMENT_BYTES: Final = 2 * 1024 * 1024
# A FineTuneJob nests about 6 levels (spec.dataset.trading.window); kubectl's own output with
# managedFields about 12. 32 is far above both and far below the parser's limits.
MAX_DEPTH: Final = 32
# Nodes per file with every alias expanded; a job has a few hundred.
MAX_NODES: Final = 20_000
# Longest value or key shown in an error message.
MAX_SHOWN: Final = 200
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
USING_LIBYAML: Final = _Base is not yaml.SafeLoader

_T = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge")}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
         b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}  # fmt: skip


class YamlLimitError(ValueError):
    """A file the loader refuses; `path` is the key path inside the document ("" if none)."""

    def __init__(self, message: str, path: str = "", line: int | None = None) -> None:
        self.path = shorten(path)
        self.line = line
        where = f"line {line}: " if line else ""
        self.message = where + message
        super().__init__(self.message)


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters with an ellipsis (error messages stay readable)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SpecLoader(_Base):  # type: ignore[misc,valid-type]
    """Safe loader with YAML 1.2-style numbers and no timestamps (see the module docstring)."""

    yaml_implicit_resolvers: ClassVar[dict[str | None, list[tuple[str, re.Pattern[str]]]]] = {}

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # int() of a 5000-digit string raises a bare ValueError: check the length first.
        digits = str(node.value).replace("_", "").lstrip("+-")
        if len(digits) > 40:
            raise YamlLimitError(f"integer {shorten(node.value, 40)} does not fit in int64")
        value = int(super().construct_yaml_int(node))
        if not INT64_MIN <= value <= INT64_MAX:
            raise YamlLimitError(
                f"integer {shorten(node.value, 40)} does not fit in int64 (the API server "
                "refuses it)"
            )
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = float(super().construct_yaml_float(node))
        if not math.isfinite(value):
            raise YamlLimitError(
                f"{shorten(node.value, 40)} is not a finite number (JSON and the API server "
                "cannot hold infinity or NaN)"
            )
        return value


SpecLoader.add_constructor(_T + "int", SpecLoader.construct_yaml_int)
SpecLoader.add_constructor(_T + "float", SpecLoader.construct_yaml_float)
_resolvers: list[tuple[str, str, str]] = [
    # YAML 1.1 booleans, as the API server's go-yaml v2 reads them (yes/no/on/off too).
    ("bool", r"(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)",
     "yYnNtTfFoO"),
    # A dot or an exponent makes a float; the exponent sign is optional (YAML 1.2).
    ("float", r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
     r"|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+0123456789."),
    # No base-60 integers (1:30 stays a string, as in YAML 1.2).
    ("int", r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0[0-7_]+|0|[1-9][0-9_]*)", "-+0123456789"),
    ("merge", r"<<", "<"),
    ("null", r"(?:~|null|Null|NULL)", "~nN"),
]  # fmt: skip
for _tag, _pattern, _first in _resolvers:
    SpecLoader.add_implicit_resolver(
        _T + _tag, re.compile(rf"\A(?:{_pattern})\Z"), list(_first) if _first else None
    )
SpecLoader.yaml_implicit_resolvers.setdefault("", []).append(
    (_T + "null", re.compile(r"\A\Z"))  # an empty plain scalar is null
)


def decode(data: bytes) -> str:
    """UTF-8 text (a UTF-8 BOM is dropped); other encodings and control characters refused."""
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise YamlLimitError(f"the file is {name}-encoded; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise YamlLimitError(
            f"not UTF-8 text (byte 0x{bad} at offset {exc.start}); save the file as UTF-8",
            line=line,
        ) from None
    m = _CONTROL.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise YamlLimitError(
            f"control character U+{ord(m.group()):04X} is not allowed in YAML/JSON", line=line
        )
    return text


def read_bounded(path: str | Path) -> str:
    """The file's text; refused without reading further once it passes MAX_DOCUMENT_BYTES."""
    with open(path, "rb") as f:
        data = f.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise YamlLimitError(
            f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; a FineTuneJob "
            "is a few KB (put data in dataset.source, not in the spec)"
        )
    return decode(data)


@dataclass
class _Frame:
    is_map: bool
    index: int = 0  # sequences: the next item's index
    key: str | None = None  # mappings: the key whose value comes next (None: a key comes)
    keys: dict[str, int] = field(default_factory=dict)  # mappings: key -> line


def _path(stack: list[_Frame]) -> str:
    out = ""
    for fr in stack:
        if fr.is_map and fr.key is not None:
            out += ("." if out else "") + shorten(fr.key, 60)
        elif not fr.is_map:
            out += f"[{fr.index}]"
    return out


def _check_events(text: str) -> None:
    """Walk the event stream once and enforce every limit (see the module docstring)."""
    loader = SpecLoader(text)
    stack: list[_Frame] = []
    # anchor -> (nodes, characters) once expanded; only anchors whose node is complete
    anchors: dict[str, tuple[int, int]] = {}
    # per open collection: (its anchor, nodes and characters counted before it)
    open_anchors: list[tuple[str | None, int, int]] = []
    nodes = chars = 0

    def fail(msg: str, event: Any) -> NoReturn:
        raise YamlLimitError(msg, _path(stack), event.start_mark.line + 1)

    def value_done() -> None:
        if stack:
            top = stack[-1]
            if top.is_map:
                top.key = None
            else:
                top.index += 1

    try:
        while loader.check_event():
            ev = loader.get_event()
            if isinstance(ev, yaml.DocumentStartEvent):
                anchors.clear()
                continue
            if isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                stack.pop()
                anchor, start, start_chars = open_anchors.pop()
                if anchor is not None:
                    anchors[anchor] = (nodes - start, chars - start_chars)
                value_done()
                continue
            if not isinstance(ev, yaml.NodeEvent):
                continue
            top = stack[-1] if stack else None
            is_key = top is not None and top.is_map and top.key is None
            tag = getattr(ev, "tag", None)
            if tag not in (None, "!") and tag not in _ALLOWED_TAGS:
                fail(f"tag {shorten(tag, 60)} is not allowed (JSON types only)", ev)
            if isinstance(ev, yaml.AliasEvent):
                if is_key:
                    fail("an alias cannot be a key", ev)
                if ev.anchor not in anchors:
                    what = "refers to itself" if any(o[0] == ev.anchor for o in open_anchors) \
                        else "has no anchor before it"  # fmt: skip
                    fail(f"alias *{shorten(str(ev.anchor), 60)} {what}", ev)
                nodes += anchors[str(ev.anchor)][0]
                chars += anchors[str(ev.anchor)][1]
            else:
                nodes += 1
                chars += len(ev.value) if isinstance(ev, yaml.ScalarEvent) else 0
            if chars > MAX_DOCUMENT_BYTES:
                fail(
                    f"aliases expand this file past {MAX_DOCUMENT_BYTES // 2**20} MiB of text; "
                    "write the values out or use fewer aliases",
                    ev,
                )
            if nodes > MAX_NODES:
                fail(
                    f"more than {MAX_NODES} values (aliases counted each time they are used); "
                    "a FineTuneJob has a few hundred",
                    ev,
                )
            if isinstance(ev, yaml.ScalarEvent):
                if is_key:
                    _check_key(loader, ev, stack, fail)
                    continue
                _check_scalar(loader, ev, fail)
                if ev.anchor is not None:
                    anchors[ev.anchor] = (1, len(ev.value))
                value_done()
            elif isinstance(ev, yaml.AliasEvent):
                value_done()
            else:  # a collection starts
                if is_key:
                    fail("keys must be strings, not lists or mappings", ev)
                kind = "map" if isinstance(ev, yaml.MappingStartEvent) else "seq"
                if ev.tag not in (None, "!", _T + kind):
                    fail(f"tag {shorten(ev.tag, 60)} does not fit a {kind}", ev)
                if len(stack) >= MAX_DEPTH:
                    fail(f"nested more than {MAX_DEPTH} levels deep", ev)
                stack.append(_Frame(is_map=isinstance(ev, yaml.MappingStartEvent)))
                open_anchors.append((ev.anchor, nodes - 1, chars))
                if ev.anchor is not None:  # a redefined anchor: aliases inside mean this one
                    anchors.pop(ev.anchor, None)
    finally:
        loader.dispose()


def _check_key(
    loader: Any, ev: Any, stack: list[_Frame], fail: Callable[[str, Any], NoReturn]
) -> None:
    top = stack[-1]
    tag = ev.tag if ev.tag not in (None, "!") else loader.resolve(
        yaml.ScalarNode, ev.value, ev.implicit
    )  # fmt: skip
    if tag not in (_T + "str", _T + "merge"):
        fail(f"key {shorten(ev.value, 60)!r} must be a string; quote it", ev)
    line = ev.start_mark.line + 1
    if ev.value in top.keys:
        top.key = ev.value
        fail(
            f"duplicate key {shorten(ev.value, 60)!r} (first at line {top.keys[ev.value]}); "
            "keep one of them",
            ev,
        )
    top.keys[ev.value] = line
    top.key = ev.value


def _check_scalar(loader: Any, ev: Any, fail: Callable[[str, Any], NoReturn]) -> None:
    tag = loader.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    if ev.tag not in (None, "!"):
        # An explicit tag may only say what the value already is (or that it is a string,
        # or that an integer is a float): `!!bool maybe` or `!!int 1.5` are refused.
        plain = loader.resolve(yaml.ScalarNode, ev.value, (True, False))
        fine = ev.tag in (_T + "str", plain) or (ev.tag == _T + "float" and plain == _T + "int")
        if not fine:
            fail(f"{shorten(repr(ev.value), 60)} is not a valid {ev.tag.rsplit(':', 1)[1]}", ev)
        tag = ev.tag
    if tag in (_T + "int", _T + "float"):
        try:
            node = yaml.ScalarNode(tag, ev.value)
            if tag == _T + "int":
                loader.construct_yaml_int(node)
            else:
                loader.construct_yaml_float(node)
        except YamlLimitError as exc:
            fail(exc.message, ev)
        except ValueError:
            fail(f"{shorten(ev.value, 40)!r} is not a valid {tag.rsplit(':', 1)[1]}", ev)


def load_all(text: str) -> Iterator[Any]:
    """Every document in `text` (checked first, then built by the C loader when present)."""
    _check_events(text)
    loader = SpecLoader(text)
    try:
        while loader.check_data():
            try:
                yield loader.get_data()
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                # The event checks should leave nothing for the constructor to refuse; if
                # something slips through, it is still a refused file, not a traceback.
                raise YamlLimitError(f"cannot read this YAML: {shorten(str(exc))}") from None
    finally:
        loader.dispose()


def load_scalar(text: str) -> Any:
    """One value as written after `--set key=` (same rules as a file)."""
    docs = list(load_all(text))
    return docs[0] if docs else None
