"""kubetune: fine-tune LLMs with LoRA/QLoRA/DPO on Kubernetes or on one machine.

The documented Python entry point. It re-exports the FineTuneJob contract (`kubetune_api`)
and reaches the trainer's notebook helpers lazily, so `import kubetune` stays light: it
imports neither torch, kopf nor kubernetes.

    import kubetune
    job = kubetune.load_job("examples/quickstart.yaml")   # a validated FineTuneJob
    kubetune.notebook.environment()                        # imports the trainer on first use
    ref = kubetune.Client().submit("examples/quickstart.yaml")  # the jobs API (local backend)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kubetune_api import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Condition,
    ConditionType,
    Env,
    ExitCode,
    FineTuneJob,
    FineTuneJobSpec,
    FineTuneJobStatus,
    InvalidSpecError,
    Phase,
    Progress,
    Reason,
    SpecError,
    load_file,
    load_job,
    parse_job,
    parse_spec,
    run_prefix,
)


def _package_version() -> str:
    """The installed distribution's version: the one `kubetune --version` prints."""
    try:
        return version("kubetune")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


__version__ = _package_version()

# Submodules of the trainer, imported on first attribute access (they may pull in torch).
_LAZY = {"notebook": "kubetune_trainer.notebook"}
# The jobs client (submit, poll, logs, cancel on the local or Kubernetes backend), from
# its module on first use.
_LAZY_ATTRS = {name: "kubetune_trainer.jobs" for name in ("Client", "JobRef", "JobInfo")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kubetune' has no attribute {name!r}")


__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Client",
    "Condition",
    "ConditionType",
    "Env",
    "ExitCode",
    "FineTuneJob",
    "FineTuneJobSpec",
    "FineTuneJobStatus",
    "InvalidSpecError",
    "JobInfo",
    "JobRef",
    "Phase",
    "Progress",
    "Reason",
    "SpecError",
    "__version__",
    "load_file",
    "load_job",
    "notebook",
    "parse_job",
    "parse_spec",
    "run_prefix",
]  # fmt: skip
