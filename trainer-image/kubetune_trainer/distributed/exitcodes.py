"""One exit code for a whole node, from the exit codes of its ranks.

torchrun itself exits 1 whatever went wrong; the operator needs to tell a bad spec
(permanent) from a lost peer (retry) from a preemption (resume, not counted). The
ranks exit with kubetune_api.ExitCode values; a rank killed by a signal has a negative
code (torch reports -SIGNUM).
"""

from __future__ import annotations

from collections.abc import Iterable

from kubetune_api.constants import ExitCode

# Which code stands for the node when ranks disagree, most telling first. A bad spec or
# bad data fails every rank the same way and must not be retried; a preempted rank
# means the pod is going away; a bug (INTERNAL) explains why peers then lost it.
_PRIORITY = (*ExitCode.PERMANENT, ExitCode.PREEMPTED, ExitCode.INTERNAL)


def node_exit_code(rank_codes: Iterable[int]) -> int:
    """The node's exit code: 0 if every rank succeeded, else the most telling failure.

    Anything that is not a known kubetune code (1 from an unmapped exception, -9 from a
    SIGKILL, 75 itself) means this node lost part of the job: RETRYABLE.
    """
    failed = [c for c in rank_codes if c != ExitCode.OK]
    if not failed:
        return ExitCode.OK
    for code in _PRIORITY:
        if code in failed:
            return code
    return ExitCode.RETRYABLE
