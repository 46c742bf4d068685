"""Bytes -> text -> values, with the limits that keep a malformed file from crashing a run.

- Text: files are decoded line by line in `dataset.encoding` (default utf-8; it must be
  ASCII-compatible, since lines are split on the byte `\\n`). A UTF-8 byte order mark at the
  start of a file is dropped. A byte sequence that is not valid in the encoding stops the
  run with `file:line` and the byte offset in the file, unless `dataset.onDecodeError:
  replace`, which puts U+FFFD in its place and counts a warning for the line.
- JSON values: a row may nest at most MAX_DEPTH levels of lists/objects (deeper rows are
  bad rows, never a RecursionError). A string holding a lone UTF-16 surrogate (`\\ud800`
  written as a JSON escape; it cannot be written out as UTF-8) makes the row bad, or with
  onDecodeError: replace becomes U+FFFD with a counted warning.
- CSV cells: at most MAX_CSV_CELL characters (Python's csv default is 128 KiB; a QA
  context can be longer). A longer cell stops reading that file with its `file:line`.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MAX_DEPTH = 100  # nesting levels of a JSON row (the row object itself is level 1)
MAX_CSV_CELL = 16 * 1024 * 1024  # characters in one CSV cell
_BOM = codecs.BOM_UTF8
_SURROGATE = re.compile("[\ud800-\udfff]")

Warn = Callable[[str, str], None]  # (file:line, message)


class SourceError(Exception):
    """The source itself cannot be read (missing file, unknown type, undecodable bytes)."""


class ValueProblem(ValueError):
    """A decoded JSON row breaks a limit; the message is the reason after `file:line:`."""


@dataclass(frozen=True)
class Decoding:
    encoding: str = "utf-8"
    on_error: Literal["error", "replace"] = "error"
    warn: Warn | None = None  # where replacements are counted

    @property
    def utf8(self) -> bool:
        return codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")

    def warning(self, where: str, message: str) -> None:
        if self.warn is not None:
            self.warn(where, message)


def text_lines(file: Path, origin: str, dec: Decoding) -> Iterator[str]:
    """The decoded lines of a file (line endings kept), BOM dropped."""
    encoding = "utf-8" if dec.utf8 else dec.encoding
    with file.open("rb") as fh:
        offset = 0
        for n, raw in enumerate(fh, start=1):
            start = 0
            if n == 1 and dec.utf8 and raw.startswith(_BOM):
                start = len(_BOM)
            try:
                line = raw[start:].decode(encoding)
            except UnicodeDecodeError as exc:
                if dec.on_error != "replace":
                    bad = raw[start + exc.start : start + exc.end].hex(" ")
                    raise SourceError(
                        f"{origin}:{n}: byte offset {offset + start + exc.start}: bytes "
                        f"{bad} are not valid {dec.encoding} ({exc.reason}); set "
                        "dataset.encoding to the file's encoding (e.g. latin-1), or "
                        "dataset.onDecodeError: replace to read them as U+FFFD"
                    ) from None
                line = raw[start:].decode(encoding, "replace")
                dec.warning(f"{origin}:{n}", f"undecodable bytes replaced with U+FFFD "
                            f"(first at byte offset {offset + start + exc.start})")  # fmt: skip
            offset += len(raw)
            yield line


class LineStream:
    """A read(n) file interface over text_lines, for the chunked JSON reader."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines, self.buf = lines, ""

    def read(self, n: int | None = None) -> str:
        if n is None or n < 0:
            out, self.buf = self.buf + "".join(self.lines), ""
            return out
        while len(self.buf) < n:
            line = next(self.lines, None)
            if line is None:
                break
            self.buf += line
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def check_value(obj: Any, dec: Decoding, where: str) -> Any:
    """`obj` (just decoded) within MAX_DEPTH, lone surrogates refused or replaced in place.
    Iterative, so a deep value cannot exhaust the stack here either."""
    replaced = 0
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueProblem(depth_message())
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in items:
            sub = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
            if isinstance(key, str) and _SURROGATE.search(key):
                replaced += _surrogate(dec, f"key {key!r}", key)
                node[_SURROGATE.sub("\ufffd", key)] = node.pop(key)
                key = _SURROGATE.sub("\ufffd", key)
            if isinstance(value, str):
                if _SURROGATE.search(value):
                    replaced += _surrogate(dec, f"field `{sub.lstrip('.')}`", value)
                    node[key] = _SURROGATE.sub("\ufffd", value)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1, sub))
    if replaced:
        dec.warning(where, f"{replaced} lone surrogate(s) replaced with U+FFFD")
    return obj


def _surrogate(dec: Decoding, what: str, value: str) -> int:
    """How many lone surrogates `value` holds (to replace), or ValueProblem."""
    if dec.on_error != "replace":
        raise ValueProblem(
            f"{what} holds a lone surrogate (a \\ud800-\\udfff escape without its pair), "
            "which is not valid Unicode; fix the escape or set dataset.onDecodeError: replace"
        )
    return len(_SURROGATE.findall(value))


def depth_message() -> str:
    return f"JSON nested deeper than {MAX_DEPTH} levels (the limit per row)"
