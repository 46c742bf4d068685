"""Suite-wide settings: never reach a model hub; keep torch to the cores we have.

Shared fixtures come from tests/support (see tests/README.md); `pythonpath` in pyproject.toml
puts the repository root on sys.path, so `tests.support` imports the same under any runner.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

pytest_plugins = [
    "tests.support.servers.plugin",  # s3_server, mlflow_server, prometheus_server, ...
    "tests.support.kube.operator",  # cluster (the API emulator), operator (kopf in-process)
    "tests.support.trainer.fixtures",  # tokenizer, chat_tokenizer, tiny_dirs
]
