"""Exact duplicate rows: counted and reported, removed with `dataset.dedupe: true`.

Two rows are duplicates when their decoded fields are equal (same keys and values, in
any key order; CSV cells compare as the strings they are). Per distinct row only a
64-bit digest and its place (16 bytes in two arrays) are kept, so a streamed file costs
~32 bytes a distinct row here, not a copy of it.
Without dedupe each duplicate is kept with a warning naming the row it repeats; with
dedupe it is left out and counted under the filter rule DEDUPE_RULE.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator

from .fingerprint import canonical
from .report import Report
from .sources import Row

DEDUPE_RULE = "dedupe (exact duplicate row)"


class _Table:
    """Open addressing over two arrays: 64-bit digest -> 64-bit value (16 bytes a slot,
    a tenth of a dict entry)."""

    def __init__(self, size: int = 1024) -> None:
        self.keys, self.vals, self.n = array("Q", [0]) * size, array("Q", [0]) * size, 0

    def setdefault(self, key: int, val: int) -> int | None:
        """The value stored for `key`, or None after storing `val`."""
        key |= 1  # 0 marks an empty slot
        mask = len(self.keys) - 1
        i = key & mask
        while self.keys[i]:
            if self.keys[i] == key:
                return self.vals[i]
            i = (i + 1) & mask
        self.keys[i], self.vals[i] = key, val
        self.n += 1
        if self.n * 4 > len(self.keys) * 3:  # at most 3/4 full
            keys, vals = self.keys, self.vals
            self.__init__(len(keys) * 2)  # type: ignore[misc]
            for k, v in zip(keys, vals, strict=True):
                if k:
                    self.setdefault(k, v)
        return None


class Dedupe:
    """Remembers the rows seen so far (a digest each) across the sources it is given."""

    def __init__(self, report: Report, remove: bool) -> None:
        self.report, self.remove = report, remove
        self.table = _Table()
        self.origins: list[str] = []

    def rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        """`rows` with duplicates reported (and left out when removing)."""
        for row in rows:
            if row.data is None:
                yield row
                continue
            digest = hashlib.blake2b(canonical(row.data), digest_size=8).digest()
            if not self.origins or self.origins[-1] != row.origin:
                self.origins.append(row.origin)
            place = (len(self.origins) - 1) << 40 | row.line
            first = self.table.setdefault(int.from_bytes(digest, "big"), place)
            if first is None:
                yield row
                continue
            seen = f"{self.origins[first >> 40]}:{first & (1 << 40) - 1}"
            self.report.stats.duplicates += 1
            if self.remove:
                self.report.stats.read += 1  # read, then left out on purpose
                self.report.filter(DEDUPE_RULE)
                continue
            self.report.warn(
                row.where, f"duplicate of {seen} (dataset.dedupe: true removes duplicates)"
            )
            yield row
