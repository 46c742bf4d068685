"""A fix to kopf (1.45) that a fleet of FineTuneJobs needs: its start-up was quadratic.

kopf holds every object's handlers until all its indexes are filled (the operator's
"indexed" toggle set, `ToggleSet(all)`). While the initial listing of an indexed resource
(our Jobs and pods: handlers/setup.py's indexes) is processed, each new object gets a toggle
of its own in that set, and every object's worker, after indexing its object, drops its
toggle and waits on the set's condition. kopf's `make_toggle` and `drop_toggle` call
`notify_all()` every time, even when the set's answer ("is everything indexed?") did not
change, and even when the toggle was not in the set any more: every waiting worker wakes,
re-checks and sleeps again. N objects -> N notifications x up to N waiters: an operator
(re)start with 3000 running jobs (9000 objects) spent 260 s of CPU before its first pass
(cProfile: 14.6 M wake-ups from 39 k notifications), 5000 jobs 427 s (bench/findings.md).

Here the set notifies only when its answer changes, which is all a waiter waits for
(`wait_for(state)` checks `is_on() == state`). The waiters then wake once, when the last
toggle goes. `Toggle.turn_to` (a toggle flipped in place) is left as kopf has it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def install() -> bool:
    """Patch kopf's ToggleSet (idempotent); False when this kopf does not look like the one
    the fix was written for (then kopf is left as it is)."""
    try:
        from kopf._cogs.aiokits import aiotoggles
    except ImportError:
        log.warning("kopf's aiotoggles not found: its start-up stays quadratic in objects")
        return False
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, "_kubetune_fixed", False):
        return True
    probe = cls(all)
    if not (hasattr(probe, "_condition") and hasattr(probe, "_toggles")):
        log.warning("kopf's ToggleSet has changed: its start-up fix is not applied")
        return False

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != was:
                self._condition.notify_all()
        return toggle

    async def drop_toggles(self: Any, toggles: Any) -> None:
        async with self._condition:
            gone = self._toggles.intersection(toggles)
            if not gone:  # none of them is here (dropped already): nothing changes
                return
            was = self.is_on()
            self._toggles.difference_update(gone)
            if self.is_on() != was:
                self._condition.notify_all()

    async def drop_toggle(self: Any, toggle: Any) -> None:
        await drop_toggles(self, (toggle,))

    cls.make_toggle = make_toggle
    cls.drop_toggle = drop_toggle
    cls.drop_toggles = drop_toggles
    cls._kubetune_fixed = True
    return True
