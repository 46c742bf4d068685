"""SIGTERM inside a data region raises PreemptedError (exit 76), also when library code
swallowed the first raise (logging does, mid-emit); the engine's flag is still set."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

import pytest

from kubetune_trainer.data.interrupt import check, preemptible
from kubetune_trainer.data.progress import RateLog
from kubetune_trainer.errors import PreemptedError


def _term() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_raises_at_once_and_calls_the_engine_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda n, f: seen.append(n))
    try:
        with (
            pytest.raises(PreemptedError, match="SIGTERM during tokenization"),
            preemptible("tokenization"),
        ):
            _term()
            for _ in range(10**7):  # never reached
                pass
        assert seen == [signal.SIGTERM]  # the engine's flag-setting handler ran too
        assert signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
    check()  # outside the region: nothing pending


def _swallowing(work: Any) -> None:
    # What logging.Handler.emit does with an error while writing.
    with contextlib.suppress(Exception):
        work()


def test_a_swallowed_raise_is_raised_again_by_progress_or_at_region_exit() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        rate = RateLog("prepare", every=3600)
        went_on = False
        with pytest.raises(PreemptedError), preemptible("data preparation"):
            _swallowing(_term)
            rate.add(1)  # the next progress update stops the work
            went_on = True
        assert not went_on
        with pytest.raises(PreemptedError), preemptible("data preparation"):
            _swallowing(_term)  # and no progress update came after it
        with preemptible("data preparation"):
            rate.add(1)  # a new region starts clean
    finally:
        signal.signal(signal.SIGTERM, previous)
