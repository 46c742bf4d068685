"""Pass this machine's pip settings into an image build without baking them into a layer.

Reads `pip config list` (config files and PIP_* variables: index, mirrors, find-links,
CA bundle, constraints, proxy), writes them as one pip.conf in OUT_DIR, with every local
path they name moved under PREFIX, and prints the `--volume` arguments that mount those
paths read-only at PREFIX during the build. The build sees PIP_CONFIG_FILE=PREFIX/pip.conf
(a build argument); nothing of it is copied into the image.

    python3 scripts/pip-build-config.py OUT_DIR PREFIX   # one `-v` argument per line
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

# Settings that only make sense on the host (or would change what the image contains).
SKIP = {"user", "target", "prefix", "root", "src", "cache-dir", "no-cache-dir", "log"}


def host_settings() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():  # `global.cert='/etc/ssl/...'`, `:env:.find-links='...'`
        scope, sep, rest = line.partition(".")
        key, eq, value = rest.partition("=")
        if sep and eq and scope in {"global", "install", ":env:"} and key not in SKIP:
            settings[key] = ast.literal_eval(value)  # later lines (env) override files
    return settings


def remap(value: str, prefix: str, mounts: set[str]) -> str:
    """Each local path (or file:// URL) in a space-separated value, moved under prefix."""
    words = []
    for word in value.split():
        scheme = "file://" if word.startswith("file://") else ""
        path = word.removeprefix(scheme)
        if path.startswith("/") and os.path.exists(path):
            # A PEP 503 index on disk links its files relatively (../../files/x.whl).
            mounts.add(
                os.path.dirname(path.rstrip("/")) if path.rstrip("/").endswith("/simple") else path
            )
            word = f"{scheme}{prefix}{path}"
        words.append(word)
    return " ".join(words)


def main(out_dir: str, prefix: str) -> None:
    mounts: set[str] = set()
    lines = ["[global]"]
    for key, value in sorted(host_settings().items()):
        lines.append(f"{key} = {remap(value, prefix, mounts)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    conf = Path(out_dir) / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    print(f"{conf}:{prefix}/pip.conf:ro")
    for path in sorted(mounts):
        print(f"{path}:{prefix}{path}:ro")


if __name__ == "__main__":
    main(*sys.argv[1:3])
