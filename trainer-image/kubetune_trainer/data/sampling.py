"""`dataset.maxExamples`: a sample spread over the whole file, fixed by the seed.

Never the first N: the records are grouped into strata (trading: the ticker; every other
format: the split group, i.e. a paper's chunks, or paraphrases sharing an answer), the
strata are put in an order drawn from the seed, and so are the records inside each. Then
records are taken round-robin: one from each stratum in turn, then a second from each,
until N. So every ticker (or paper) is represented as evenly as N allows, at dates (or
chunks) drawn from all of it. The sample keeps file order.

The converted records are held in memory to draw from (the source is still read row by
row); with maxExamples unset nothing is held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any


def _score(*parts: object) -> bytes:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).digest()[:8]


def sample(
    records: list[dict[str, Any]], n: int, seed: int, stratum: Callable[[dict[str, Any]], str]
) -> list[dict[str, Any]]:
    """At most `n` of `records`, stratified and drawn by `seed` (see the module doc)."""
    if len(records) <= n:
        return records
    strata: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        strata.setdefault(stratum(rec), []).append(i)
    order = sorted(strata, key=lambda k: _score(seed, "stratum", k))
    queues = [sorted(strata[k], key=lambda i: _score(seed, "record", i)) for k in order]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for q in queues:
            if depth < len(q) and len(picked) < n:
                picked.append(q[depth])
        depth += 1
    return [records[i] for i in sorted(picked)]
