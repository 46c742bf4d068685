"""Client-side flow control for the Kubernetes API: a requests-per-second cap with a burst
(client-go's and controller-runtime's QPS/Burst) and the wait before retrying a 429.

An API server under load answers 429 Too Many Requests (priority and fairness) with a
Retry-After header; retrying sooner only adds to its queue. A fleet of jobs must also not
turn into a request storm at an operator restart: the token bucket spreads it out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

# 429 answers retried per request before it fails as an ApiError (then the follow loop's
# own backoff applies), and the longest single wait whatever Retry-After says.
MAX_THROTTLED_RETRIES = 5
MAX_RETRY_AFTER = 60.0
BASE_BACKOFF = 0.5


class TokenBucket:
    """`burst` requests at once, then `qps` per second. Async-safe without a lock: each
    caller reserves its slot (tokens may go negative) before it awaits."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = float(qps)
        self.burst = max(int(burst), 1)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0: go now)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    async def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
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
