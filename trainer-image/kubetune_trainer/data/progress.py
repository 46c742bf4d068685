"""Progress of long data work (prepare, tokenize, pack): rows/s and an ETA.

In a terminal: a tqdm bar on stderr. Elsewhere (pods, CI, pipes): one log line at most
every `every` seconds, `tokenize: 120,000/1,000,000 rows (12%), 8,100 rows/s, ETA 1m48s`,
and a last line with the total and the mean rate. A worker process (tokenize with
num_proc) reports its own share under its own name.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from .interrupt import check

log = logging.getLogger("kubetune_trainer.data")
EVERY = float(os.environ.get("KUBETUNE_PROGRESS_SECONDS", "10"))


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class RateLog:
    def __init__(self, what: str, total: int | None = None, every: float | None = None) -> None:
        self.what, self.total, self.every = what, total if total and total > 0 else None, every
        self.done = 0
        self.start = self._last = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=what, unit="rows", file=sys.stderr,
                            mininterval=0.5, dynamic_ncols=True, leave=False)  # fmt: skip

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} rows ({100 * self.done / self.total:.0f}%)"
        else:
            text += " rows"
        text += f", {rate:,.0f} rows/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def add(self, n: int) -> None:
        check()  # a SIGTERM whose exception something swallowed stops here (interrupt.py)
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= (EVERY if self.every is None else self.every):
            self._last = now
            log.info(self.line(now))

    def close(self) -> str:
        """The summary line (also logged when the work took longer than one report)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elapsed = time.monotonic() - self.start
        text = f"{self.what}: {self.done:,} rows in {elapsed:.1f}s"
        text += f" ({self.done / max(elapsed, 1e-9):,.0f} rows/s)"
        if elapsed >= (EVERY if self.every is None else self.every):
            log.info(text)
        return text
