"""Read raw rows from a local path or an s3:// URI, lazily, each with its file and line.

Readers never hold more than one row (plus a small buffer) in memory:

- JSONL: line by line.
- CSV: the csv module over the open file, i.e. in small buffered chunks; a header row
  names the fields.
- JSON: either one list of objects or one object. With `streaming: true` a list is decoded
  element by element from 16 KiB chunks (no extra package); without it the whole text is
  read first (faster, but holds the file in memory). A single object is always read whole.

Bytes are decoded as data.decoding describes (encoding, BOM, undecodable bytes, nesting
depth, lone surrogates, CSV cell size). Every row carries `origin` (the URI or path as the
user wrote it, plus the file inside a folder) so problem reports and fingerprints do not
depend on where s3 objects were fetched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_api.uris import scheme_of

from .decoding import (
    MAX_CSV_CELL,
    Decoding,
    LineStream,
    SourceError,
    ValueProblem,
    check_value,
    depth_message,
    text_lines,
)

SUFFIXES = (".jsonl", ".json", ".csv")
_CHUNK = 16 * 1024


@dataclass
class Row:
    origin: str  # file as the user knows it (uri or path)
    line: int  # 1-based line where the row starts
    data: dict[str, Any] | None  # None when the row could not be decoded
    error: str | None = None  # why it could not be decoded

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.line}"


def localize(uri: str, cache_dir: str | Path, endpoint_url: str | None = None) -> tuple[Path, str]:
    """(local path, display name). s3:// objects are fetched through kubetune_trainer.storage
    into their own folder under `cache_dir` (two sources never overwrite each other)."""
    if scheme_of(uri) == "s3":
        from kubetune_trainer.storage import fetch  # lazy: boto3 only when needed

        dest = Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:16]
        return Path(fetch(uri, dest, endpoint_url)), uri
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    if not path.exists():
        raise SourceError(
            f"{uri}: no such file or folder (a relative path in a spec file is looked up next "
            f"to the spec file, then in the working directory {Path.cwd()})"
        )
    return path, uri


def data_files(path: Path, display: str) -> list[tuple[Path, str]]:
    """The data files behind a path: the file itself, or a folder's data files in name order."""
    if path.is_file():
        return [(path, display)]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise SourceError(f"{display}: folder holds no {', '.join(SUFFIXES)} files")
    return [(f, f"{display.rstrip('/')}/{f.relative_to(path).as_posix()}") for f in files]


def read_rows(
    uri: str,
    streaming: bool = False,
    cache_dir: str | Path | None = None,
    endpoint_url: str | None = None,
    decoding: Decoding | None = None,
) -> Iterator[Row]:
    """Every row of every data file behind `uri`, in order.

    Without `cache_dir`, an s3 object is fetched into a temporary folder that is removed
    once the rows have been read.
    """
    with tempfile.TemporaryDirectory(prefix="kubetune-data-") as tmp:
        path, display = localize(uri, cache_dir or tmp, endpoint_url)
        for file, origin in data_files(path, display):
            yield from read_file(file, origin, streaming, decoding)


def read_file(
    file: Path, origin: str, streaming: bool = False, decoding: Decoding | None = None
) -> Iterator[Row]:
    dec = decoding or Decoding()
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(file, origin, dec)
    if suffix == ".csv":
        return _csv(file, origin, dec)
    if suffix == ".json":
        return _json(file, origin, _CHUNK if streaming else None, dec)
    raise SourceError(f"{origin}: unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}")


def _object(obj: Any, origin: str, line: int, dec: Decoding) -> Row:
    """A decoded JSON value as a row: an object within the limits, else a bad row."""
    if not isinstance(obj, dict):
        return Row(origin, line, None, f"expected a JSON object, got {type(obj).__name__}")
    try:
        return Row(origin, line, check_value(obj, dec, f"{origin}:{line}"))
    except ValueProblem as exc:
        return Row(origin, line, None, str(exc))


def _jsonl(file: Path, origin: str, dec: Decoding) -> Iterator[Row]:
    for n, line in enumerate(text_lines(file, origin, dec), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield Row(origin, n, None, f"invalid JSON ({json_error(exc)})")
            continue
        except RecursionError:
            yield Row(origin, n, None, depth_message())
            continue
        yield _object(obj, origin, n, dec)


def _csv(file: Path, origin: str, dec: Decoding) -> Iterator[Row]:
    csv.field_size_limit(MAX_CSV_CELL)  # process-wide; the default 128 KiB is too small
    reader = csv.reader(text_lines(file, origin, dec))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = str(exc)
            if "field larger than field limit" in why:
                why = f"a cell is longer than {MAX_CSV_CELL} characters (the CSV cell limit)"
            yield Row(origin, start, None, f"unreadable CSV: {why}; the rest of this file "
                      "is not read")  # fmt: skip
            return
        line, start = start, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield Row(origin, line, None, f"expected {len(header)} columns, got {len(values)}")
            continue
        yield Row(origin, line, dict(zip(header, values, strict=True)))


def json_error(exc: json.JSONDecodeError) -> str:
    """`Expecting value at column 3`; `Unterminated string starting at column 9` (the
    decoder's message may end in "at" already)."""
    at = "" if exc.msg.endswith(" at") else " at"
    return f"{exc.msg}{at} column {exc.colno}"


class _JsonReader:
    """A buffer over a JSON file that tracks the line of its read position."""

    def __init__(self, fh: Any, chunk: int | None) -> None:
        self.fh, self.chunk = fh, chunk
        self.buf = fh.read(chunk) if chunk else fh.read()
        self.pos, self.line = 0, 1

    def more(self) -> bool:
        """Append the next chunk, dropping what is already consumed."""
        data = self.fh.read(self.chunk) if self.chunk else ""
        if data:
            self.buf, self.pos = self.buf[self.pos :] + data, 0
        return bool(data)

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def skip(self, chars: str = "") -> bool:
        """Skip whitespace and `chars`; False at the end of the file."""
        while True:
            i = self.pos
            while i < len(self.buf) and (self.buf[i].isspace() or self.buf[i] in chars):
                i += 1
            self.advance(i)
            if self.pos < len(self.buf):
                return True
            if not self.more():
                return False


def _json(file: Path, origin: str, chunk: int | None, dec: Decoding) -> Iterator[Row]:
    """A JSON list decoded element by element (line numbers kept), or one object."""
    decoder = json.JSONDecoder()
    fh = LineStream(text_lines(file, origin, dec))
    r = _JsonReader(fh, chunk)
    if not r.skip() or r.buf[r.pos] not in "[{":
        yield Row(origin, r.line, None, "invalid JSON: expected a list of objects or an object")
        return
    if r.buf[r.pos] == "{":  # one object: read it whole
        r.buf += fh.read()
        try:
            obj = decoder.raw_decode(r.buf, r.pos)[0]
        except json.JSONDecodeError as exc:
            yield Row(origin, exc.lineno, None, f"invalid JSON ({exc.msg})")
            return
        except RecursionError:
            yield Row(origin, r.line, None, depth_message())
            return
        yield _object(obj, origin, r.line, dec)
        return
    r.advance(r.pos + 1)
    while r.skip(","):
        if r.buf[r.pos] == "]":
            return
        while True:
            try:
                obj, end = decoder.raw_decode(r.buf, r.pos)
                break
            except RecursionError:  # its end cannot be found without decoding it
                yield Row(origin, r.line, None, f"{depth_message()}; the rest of this "
                          "file is not read")  # fmt: skip
                return
            except json.JSONDecodeError as exc:
                if not r.more():  # truly broken: later elements cannot be located
                    line = r.line + r.buf.count("\n", r.pos, exc.pos)
                    yield Row(origin, line, None, f"invalid JSON ({exc.msg}); "
                              "the rest of this file is not read")  # fmt: skip
                    return
        yield _object(obj, origin, r.line, dec)
        r.advance(end)
