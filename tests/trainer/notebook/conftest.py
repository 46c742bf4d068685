"""The notebook test starts a real moto S3 server from tests/fixtures.

A bare `pytest` does not put the repo root on sys.path (`python -m pytest` does): add it
before tests import the shared server helpers.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
