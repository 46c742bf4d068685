"""Collect bad rows as `file:line: reason` and apply the bad_rows policy (fail | skip)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from kubetune_trainer.errors import BadDataError
from kubetune_trainer.records import PrepStats

MAX_PER_ROW = 5  # problems of one row listed (the rest are counted)


T = TypeVar("T")


class RowError(ValueError):
    """One row is invalid; the message is the reason shown after `file:line:`."""


class Problems:
    """Collects every problem of one row, so a user fixes them in one go.

    check = Problems()
    question = check(text, d, "question")   # None when it failed
    answer = check(text, d, "answer")
    check.done()                             # RowError listing all, if any
    """

    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        try:
            return fn(*args, **kw)
        except RowError as exc:
            self.found.append(str(exc))
            return None  # type: ignore[return-value]

    def add(self, reason: str) -> None:
        self.found.append(reason)

    def done(self) -> None:
        if not self.found:
            return
        shown = self.found[:MAX_PER_ROW]
        more = len(self.found) - len(shown)
        raise RowError("; ".join(shown) + (f"; and {more} more" if more else ""))


@dataclass
class Report:
    policy: Literal["fail", "skip"] = "fail"
    max_errors: int = 50
    stats: PrepStats = field(default_factory=PrepStats)
    total_problems: int = 0
    files: dict[str, int] = field(default_factory=dict)  # problems per file, in order seen

    def problem(self, where: str, reason: str, dropped: bool = True) -> None:
        """Record one bad row (`where` is `file:line`). Listed up to max_errors, all counted;
        `dropped`: the row is left out under badRows: skip (counted as skipped)."""
        self.total_problems += 1
        self.stats.skipped += dropped
        file = where.rsplit(":", 1)[0] if where.rsplit(":", 1)[-1].isdigit() else where
        self.files[file] = self.files.get(file, 0) + 1
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
        if list(self.files) != [what]:  # name the files the rows are in (news, validation)
            what = ", ".join(f"{f} ({n})" if len(self.files) > 1 else f
                             for f, n in self.files.items())  # fmt: skip
        lines = [
            f"{what}: {self.total_problems} invalid row(s) "
            f"(dataset.badRows is fail; fix them or set dataset.badRows: skip to drop them)",
            *shown,
        ]
        if more:
            lines.append(f"... and {more} more (dataset.maxErrors: {self.max_errors})")
        raise BadDataError("\n".join(lines), problems=list(shown))
