"""Everything a run reports, in one wing; the engine calls it, it never calls the engine.

- `sinks`: the `Sink` protocol, `LogRow` (one logging step) and `RunInfo`.
- `local`: metrics.jsonl and the console, the fan-out over every sink and `sinks_for`, the
  one place that decides which sinks a run gets.
- `prometheus`: the `/metrics` endpoint and Pushgateway push (`METRICS`, the exported names).
- `tracking`: the MLflow run (params, metrics, artifacts, model registry).
- `report`: report.json, report.md and the loss curve.

Optional third-party packages are imported where they are used; a missing one is a
`ConfigError` naming the extra to install (`missing_extra`), never a silently dropped sink.
"""

from __future__ import annotations

from kubetune_trainer.errors import ConfigError

TRAINER_EXTRA = "pip install 'kubetune[trainer]'"


def missing_extra(package: str, what: str) -> ConfigError:
    """The error for an absent optional package: what needs it and the install command."""
    return ConfigError(f"{what} needs the Python package {package}: {TRAINER_EXTRA}")
