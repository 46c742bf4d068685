"""Pure: conditions and phase. Old status + a transition -> new status.

Conditions are keyed by type; lastTransitionTime moves only when a condition's
status flips (Kubernetes convention), so re-writing the same state is a no-op and
the operator writes status only when something really changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetune_api.constants import ConditionType as CT
from kubetune_api.constants import Phase, Reason
from kubetune_api.status import CONDITION_MESSAGE_MAX, Condition, FineTuneJobStatus, Progress


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def load_status(raw: dict[str, Any] | None) -> FineTuneJobStatus:
    """The stored status, or a fresh one if absent or unreadable (never crash on it).

    A condition metav1 would refuse (an empty reason from a hand edit or another tool) is
    dropped alone: it must not cost the attempt and restart counters with it."""
    try:
        return FineTuneJobStatus.model_validate(raw or {})
    except ValueError:
        pass
    kept = [c for c in (raw or {}).get("conditions") or [] if _readable(c)]
    try:
        return FineTuneJobStatus.model_validate({**(raw or {}), "conditions": kept})
    except ValueError:
        return FineTuneJobStatus()


def _readable(cond: Any) -> bool:
    try:
        Condition.model_validate(cond)
    except ValueError:
        return False
    return True


def dump_status(status: FineTuneJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def get_condition(status: FineTuneJobStatus, ctype: str) -> Condition | None:
    return next((cnd for cnd in status.conditions if cnd.type == ctype), None)


def set_condition(
    status: FineTuneJobStatus, ctype: str, value: bool, reason: str, message: str, now: datetime
) -> None:
    """Add or update one condition in place; keep its transition time if status is unchanged."""
    new = "True" if value else "False"
    message = message[:CONDITION_MESSAGE_MAX]  # the CRD refuses a longer one
    old = get_condition(status, ctype)
    if old is None:
        status.conditions.append(
            Condition(type=ctype, status=new, reason=reason, message=message,
                      last_transition_time=rfc3339(now))
        )  # fmt: skip
        return
    if old.status != new:
        old.last_transition_time = rfc3339(now)
    old.status, old.reason, old.message = new, reason, message


def clear_condition(
    status: FineTuneJobStatus, ctype: str, reason: str, message: str, now: datetime
) -> None:
    """Set a condition to False only if it exists (absent means never happened)."""
    if get_condition(status, ctype) is not None:
        set_condition(status, ctype, False, reason, message, now)


def set_phase(
    status: FineTuneJobStatus, phase: str, reason: str, message: str, now: datetime
) -> None:
    """Move to a phase and keep the phase-shaped conditions consistent with it."""
    status.phase = phase  # type: ignore[assignment]
    status.message = message
    if phase == Phase.PENDING:
        set_condition(status, CT.CREATED, True, Reason.JOB_CREATED, message, now)
        clear_condition(status, CT.RUNNING, reason, message, now)
    elif phase == Phase.RUNNING:
        set_condition(status, CT.CREATED, True, Reason.JOB_CREATED, "", now)
        set_condition(status, CT.RUNNING, True, Reason.PODS_RUNNING, message, now)
        clear_condition(status, CT.RESTARTING, Reason.PODS_RUNNING, "", now)
        clear_condition(status, CT.SUSPENDED, Reason.RESUMED, "", now)
    elif phase == Phase.SUCCEEDED:
        set_condition(status, CT.SUCCEEDED, True, reason, message, now)
        clear_condition(status, CT.RUNNING, reason, message, now)
        clear_condition(status, CT.RESTARTING, reason, "", now)
    elif phase == Phase.FAILED:
        set_condition(status, CT.FAILED, True, reason, message, now)
        clear_condition(status, CT.RUNNING, reason, message, now)
        clear_condition(status, CT.RESTARTING, reason, "", now)
    elif phase == Phase.SUSPENDED:
        set_condition(status, CT.SUSPENDED, True, reason, message, now)
        clear_condition(status, CT.RUNNING, reason, message, now)


def _phase_condition(status: FineTuneJobStatus) -> Condition | None:
    """The condition that says why the job is in its phase (its reason is Ready's)."""
    conflict = get_condition(status, CT.CHILD_CONFLICT)
    if conflict is not None and conflict.status == "True":
        return conflict
    if status.phase == Phase.PENDING:
        restarting = get_condition(status, CT.RESTARTING)
        if restarting is not None and restarting.status == "True":
            return restarting
        return get_condition(status, CT.CREATED)
    return get_condition(status, status.phase)  # Running, Succeeded, Failed, Suspended


def summarize(status: FineTuneJobStatus, generation: int, now: datetime) -> None:
    """Ready / Reconciling / Stalled from the phase (kstatus' conventions; what each means
    is in kubetune_api.constants.ConditionType), then every condition stamped with the
    generation this decision acted on (metav1.Condition.observedGeneration): the operator
    re-derives all of them from that generation on each pass."""
    cond = _phase_condition(status)
    reason, message = (cond.reason if cond else status.phase), status.message
    stalled = status.phase == Phase.FAILED or (cond is not None and cond.type == CT.CHILD_CONFLICT)
    busy = status.phase in (Phase.PENDING, Phase.RUNNING) and not stalled
    set_condition(status, CT.READY, status.phase == Phase.SUCCEEDED, reason, message, now)
    if busy:
        set_condition(status, CT.RECONCILING, True, reason, message, now)
    else:
        clear_condition(status, CT.RECONCILING, reason, "", now)
    if stalled:
        set_condition(status, CT.STALLED, True, reason, message, now)
    else:
        clear_condition(status, CT.STALLED, reason, "", now)
    for c in status.conditions:
        c.observed_generation = generation


def eta_display(seconds: float | None) -> str:
    """1h05m, 12m30s, 45s (like kubectl's ages): the ETA column."""
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 48 * 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def progress_display(p: Progress) -> str:
    if p.total_steps <= 0:
        return f"{p.step}/?" if p.step else ""
    return f"{p.step}/{p.total_steps} ({100 * p.step // p.total_steps}%)"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 patch turning `old` into `new`: keys that disappeared become null (a plain
    dump of `new` would leave them behind, e.g. a cleared nextAttemptAfter)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    return patch
