"""Registry tests use the suite's real moto S3 and MLflow servers (tests/fixtures), and
the preference tests' tiny data (kt_pref_data) for a real engine run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root: tests.fixtures
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preference"))  # kt_pref_data

from tests.fixtures.plugin import mlflow_server, s3_server

__all__ = ["mlflow_server", "s3_server"]
