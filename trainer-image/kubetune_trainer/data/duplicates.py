"""Exact duplicate rows: counted and reported, removed with `dataset.dedupe: true`.

Two rows are duplicates when their decoded fields are equal (same keys and values, in
any key order; CSV cells compare as the strings they are). Only a 16-byte digest per
distinct row is kept, so a stream stays in bounded memory per distinct row.
Without dedupe each duplicate is kept with a warning naming the row it repeats; with
dedupe it is left out and counted under the filter rule DEDUPE_RULE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from .fingerprint import canonical
from .report import Report
from .sources import Row

DEDUPE_RULE = "dedupe (exact duplicate row)"


class Dedupe:
    """Remembers the rows seen so far (a digest each) across the sources it is given."""

    def __init__(self, report: Report, remove: bool) -> None:
        self.report, self.remove = report, remove
        self.first: dict[bytes, str] = {}

    def rows(self, rows: Iterable[Row]) -> Iterator[Row]:
        """`rows` with duplicates reported (and left out when removing)."""
        for row in rows:
            if row.data is None:
                yield row
                continue
            key = hashlib.blake2b(canonical(row.data), digest_size=16).digest()
            seen = self.first.get(key)
            if seen is None:
                self.first[key] = row.where
                yield row
                continue
            self.report.stats.duplicates += 1
            if self.remove:
                self.report.stats.read += 1  # read, then left out on purpose
                self.report.filter(DEDUPE_RULE)
                continue
            self.report.warn(
                row.where, f"duplicate of {seen} (dataset.dedupe: true removes duplicates)"
            )
            yield row
