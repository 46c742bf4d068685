"""The reporting wing's optional packages: imported where used, a missing one named with
the extra that installs it (never a sink silently left out)."""

from __future__ import annotations

import sys

import pytest

from kubetune_trainer.errors import ConfigError
from kubetune_trainer.reporting import TRAINER_EXTRA
from kubetune_trainer.reporting.local import ConsoleSink
from kubetune_trainer.reporting.prometheus import METRICS, PrometheusSink
from kubetune_trainer.reporting.tracking import MlflowSink


def _without(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """`import package` (and its submodules) now raise ImportError, as when not installed."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def test_prometheus_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "prometheus_client")
    assert "kubetune_train_loss" in {m.name for m in METRICS}  # the names need no package
    with pytest.raises(ConfigError, match="prometheus-client") as err:
        PrometheusSink(0)
    assert TRAINER_EXTRA in str(err.value)


def test_mlflow_without_its_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "mlflow")
    with pytest.raises(ConfigError, match="mlflow-skinny") as err:
        MlflowSink("http://127.0.0.1:1")
    assert TRAINER_EXTRA in str(err.value)


def test_console_bar_without_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            pass

    _without(monkeypatch, "tqdm")
    with pytest.raises(ConfigError, match="tqdm") as err:
        ConsoleSink(stream=Terminal()).on_train_begin(0, 10)
    assert TRAINER_EXTRA in str(err.value)
