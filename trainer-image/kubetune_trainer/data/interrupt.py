"""SIGTERM during data work (prepare, tokenize, pack, cache upload) stops at once.

The engine's own SIGTERM handler only sets a flag that the training loop reads after a
step; before the first step there is no step, so a preempted pod preparing a large
dataset would run on until it is killed. Inside `preemptible(...)` a SIGTERM first calls
that handler (the flag stays right for whoever reads it), then raises PreemptedError in
the main thread: the work in progress is abandoned, temporary files are removed by their
owners' `finally`, nothing is committed, and the process exits with the preemption code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubetune_trainer.errors import PreemptedError


def _message(what: str) -> str:
    return f"SIGTERM during {what}, before training: stopped, nothing committed"


@contextmanager
def preemptible(what: str) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a notebook may run us elsewhere)
        return
    hit = {"yes": False}
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: Any) -> None:
        if hit["yes"]:
            return  # a second SIGTERM while unwinding changes nothing
        hit["yes"] = True
        if callable(previous):
            previous(signum, frame)
        raise PreemptedError(_message(what))

    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    except PreemptedError:
        raise
    except BaseException as exc:
        # Library code may turn our exception into its own while unwinding (datasets'
        # worker pool re-raises a TimeoutError from its cleanup): still a preemption.
        if hit["yes"]:
            raise PreemptedError(_message(what)) from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
