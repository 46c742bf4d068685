"""The one polling loop the tests share (the operator harness, the local jobs API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T], timeout: float = 20, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll until fn() is truthy (returns it); fail with `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value: {last!r}")
