"""The validation split's groups and scores, and why a validation split is too small.

See data.prepare's module doc for the rules (groups, scores, small-data corrections).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kubetune_api.spec import FineTuneJob

from .fingerprint import canonical
from .formats.base import Record


def group_key(record: Record) -> str:
    """The split group of a record: meta.group, else the record itself."""
    group = record.get("meta", {}).get("group")
    return canonical(group if group is not None else record).decode()


def split_score(key: str, seed: int) -> float:
    """A group's place in [0, 1), fixed by the seed: below the fraction it validates."""
    digest = hashlib.sha256(f"{seed}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Groups:
    """What the small-data corrections need to know, in constant memory."""

    first: str | None = None
    several: bool = False
    lowest_train: tuple[float, str] | None = None
    highest_validation: tuple[float, str] | None = None

    def see(self, key: str, score: float, validates: bool) -> None:
        if self.first is None:
            self.first = key
        elif key != self.first:
            self.several = True
        if validates:
            if self.highest_validation is None or (score, key) > self.highest_validation:
                self.highest_validation = (score, key)
        elif self.lowest_train is None or (score, key) < self.lowest_train:
            self.lowest_train = (score, key)

    def move(self, n_train: int, n_validation: int, fraction: float) -> tuple[str, bool] | None:
        """(group key, True: to validation / False: to train), or None."""
        if not n_train and n_validation and self.highest_validation:
            return self.highest_validation[1], False
        if not n_validation and fraction > 0 and self.several and self.lowest_train:
            return self.lowest_train[1], True
        return None


def validation_note(job: FineTuneJob, fmt: str, n: int, groups: Groups | None) -> str | None:
    """Why validation holds fewer than validation.minExamples examples (None: enough)."""
    val = job.spec.dataset.validation
    if n >= val.min_examples:
        return None
    if val.source:
        why = f"validation.source {val.source} gave {n}"
    elif val.fraction == 0:
        why = "validation.fraction is 0"
    elif groups is not None and not groups.several:
        why = ("every example is in one split group (identical answers, or a single paper), "
               "and a group is never split")  # fmt: skip
    elif fmt == "trading":
        why = (f"the latest {val.fraction:.0%} of dates gave {n} (the split is "
               "chronological; earlier examples whose horizon reaches it are purged)")  # fmt: skip
    else:
        why = f"validation.fraction {val.fraction} of the data's groups gave {n}"
    return (
        f"validation has {n} example(s), fewer than validation.minExamples {val.min_examples}: "
        f"{why}; no base/tuned comparison will be made (add data, raise validation.fraction, "
        "or give validation.source)"
    )
