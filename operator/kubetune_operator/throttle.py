"""Client-side flow control for the Kubernetes API: a requests-per-second cap with a burst
(client-go's and controller-runtime's QPS/Burst) and the wait before retrying a 429.

An API server under load answers 429 Too Many Requests (priority and fairness) with a
Retry-After header; retrying sooner only adds to its queue. A fleet of jobs must also not
turn into a request storm at an operator restart: the token bucket spreads it out.

Two lanes share the bucket. While any job is being created (its status, ConfigMap, Service
and Job; `creation()`), a deferrable request (a running job's progress-only status write)
does not take a token: it is dropped, and the job's next look writes the progress then. A
burst of new jobs thus gets the whole budget instead of a third of it going to progress
that is seconds old; phase changes and every other request are never deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping

# 429 answers retried per request before it fails as an ApiError (then the scheduler's
# own backoff applies), and the longest single wait whatever Retry-After says.
MAX_THROTTLED_RETRIES = 5
MAX_RETRY_AFTER = 60.0
BASE_BACKOFF = 0.5


class Deferred(Exception):
    """A deferrable request was not sent: creations have the budget (write it later)."""


class TokenBucket:
    """`burst` requests at once, then `qps` per second. Async-safe without a lock: each
    caller reserves its slot (tokens may go negative) before it awaits."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = float(qps)
        self.burst = max(int(burst), 1)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self.creating = 0  # jobs being created (or waiting their turn to be)

    @contextlib.contextmanager
    def creation(self) -> Iterator[None]:
        """Around one job's creation: deferrable requests give way until every one ends."""
        self.creating += 1
        try:
            yield
        finally:
            self.creating -= 1

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0: go now)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    async def acquire(self, deferrable: bool = False) -> float:
        """Wait for a token; a deferrable caller raises Deferred instead while creations
        are under way, also if one began while it waited (its token is given back)."""
        if deferrable and self.creating:
            raise Deferred
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        if deferrable and self.creating:
            self.tokens += 1  # the slot goes to the creations queued behind it
            raise Deferred
        return wait


def retry_after(headers: Mapping[str, str], retry: int) -> float:
    """Seconds before retry number `retry` (0-based) of a throttled request: at least what
    the server asked (Retry-After, in seconds), at least an exponential backoff, at most
    MAX_RETRY_AFTER."""
    asked = 0.0
    text = (headers.get("Retry-After") or "").strip()
    if text:
        try:
            asked = float(text)
        except ValueError:  # an HTTP date: not sent by kube-apiserver; use the backoff
            asked = 0.0
    return min(max(asked, BASE_BACKOFF * 2**retry), MAX_RETRY_AFTER)
