"""Storage/tracking/metrics tests: real servers from tests/fixtures.

`make test` runs `python -m pytest` from the repo root, which puts the root on sys.path;
a bare `pytest` does not, so add it before importing the shared fixtures.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fixtures.plugin import (  # noqa: E402, F401 - fixtures are found by name
    mlflow_server,
    prometheus_server,
    pushgateway_server,
    s3_server,
)
