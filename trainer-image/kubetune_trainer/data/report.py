"""Collect bad rows as `file:line: reason` and apply the bad_rows policy (fail | skip)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kubetune_trainer.errors import BadDataError
from kubetune_trainer.records import PrepStats


class RowError(ValueError):
    """One row is invalid; the message is the reason shown after `file:line:`."""


@dataclass
class Report:
    policy: Literal["fail", "skip"] = "fail"
    max_errors: int = 50
    stats: PrepStats = field(default_factory=PrepStats)
    total_problems: int = 0

    def problem(self, where: str, reason: str) -> None:
        """Record one bad row (`where` is `file:line`). Listed up to max_errors, all counted."""
        self.total_problems += 1
        self.stats.skipped += 1
        if len(self.stats.problems) < self.max_errors:
            self.stats.problems.append(f"{where}: {reason}")

    def warn(self, where: str, message: str) -> None:
        """A row kept despite a problem; listed up to max_errors, all counted."""
        self.stats.warned += 1
        if len(self.stats.warnings) < self.max_errors:
            self.stats.warnings.append(f"{where}: {message}")

    def filter(self, rule: str, n: int = 1) -> None:
        """`n` valid rows left out on purpose by `rule` (counted by rule)."""
        self.stats.filtered += n
        self.stats.filtered_by[rule] = self.stats.filtered_by.get(rule, 0) + n

    def check(self, what: str) -> None:
        """Raise BadDataError under policy fail when any row was bad."""
        if self.policy != "fail" or not self.total_problems:
            return
        shown = self.stats.problems
        more = self.total_problems - len(shown)
        lines = [
            f"{what}: {self.total_problems} invalid row(s) "
            f"(dataset.badRows is fail; fix them or set dataset.badRows: skip to drop them)",
            *shown,
        ]
        if more:
            lines.append(f"... and {more} more (dataset.maxErrors: {self.max_errors})")
        raise BadDataError("\n".join(lines), problems=list(shown))
