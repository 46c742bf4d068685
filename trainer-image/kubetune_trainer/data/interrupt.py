"""SIGTERM during data work (prepare, tokenize, pack, cache upload) or the evaluation after
training stops at once.

The engine's own SIGTERM handler only sets a flag that the training loop reads after a
step; before the first step there is no step, so a preempted pod preparing a large
dataset would run on until it is killed. Inside `preemptible(...)` a SIGTERM first calls
that handler (the flag stays right for whoever reads it), then raises PreemptedError in
the main thread (and again at the next `check()`, should library code swallow it): the
work in progress is abandoned, temporary files are removed by their owners' `finally`,
nothing is committed, and the process exits with the preemption code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubetune_trainer.errors import PreemptedError

# The region SIGTERM hit, until it is left: `check` raises from there on. A raise from the
# handler alone can be lost: when the signal lands inside logging's emit (a progress line
# to a pipe), logging swallows it as a failed write and the work goes on.
_HIT: dict[str, str | None] = {"message": None}
BEFORE_TRAINING = "before training: stopped, nothing committed"


def check() -> None:
    """Raise PreemptedError if SIGTERM arrived inside the current region (cheap; call it
    from loops, e.g. progress updates)."""
    if _HIT["message"] is not None:
        raise PreemptedError(_HIT["message"])


@contextmanager
def preemptible(what: str, outcome: str = BEFORE_TRAINING) -> Iterator[None]:
    """`outcome`: what the stop leaves behind, for the message."""
    message = f"SIGTERM during {what}, {outcome}"
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a notebook may run us elsewhere)
        return
    hit = {"yes": False}
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: Any) -> None:
        if hit["yes"]:
            return  # a second SIGTERM while unwinding changes nothing
        hit["yes"] = True
        _HIT["message"] = message
        if callable(previous):
            previous(signum, frame)
        raise PreemptedError(message)

    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    except PreemptedError:
        raise
    except BaseException as exc:
        # Library code may turn our exception into its own while unwinding (datasets'
        # worker pool re-raises a TimeoutError from its cleanup): still a preemption.
        if hit["yes"]:
            raise PreemptedError(message) from exc
        raise
    else:
        if hit["yes"]:  # swallowed, and no check() came after it
            raise PreemptedError(message)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _HIT["message"] = None
