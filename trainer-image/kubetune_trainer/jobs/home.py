"""The kubetune home on this machine: the local job queue, its worker lock and job logs.

$KUBETUNE_HOME, else ~/.kubetune. Tests point it at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "KUBETUNE_HOME"


def kubetune_home() -> Path:
    root = os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".kubetune")
    path = Path(root).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path
