"""Registry tests use the suite's real moto S3 and MLflow servers (tests/fixtures)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root: tests.fixtures

from tests.fixtures.plugin import mlflow_server, s3_server

__all__ = ["mlflow_server", "s3_server"]
