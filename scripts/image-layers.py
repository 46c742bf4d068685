"""Print an image's layers (size and the Dockerfile step that made each), for BENCHMARKS.md.

buildah has no `history` command; this reads the image's history (buildah inspect) and the
layer sizes containers/storage records (its layers.json), oldest layer first.

    python3 scripts/image-layers.py localhost/kubetune/trainer:0.1.0-cpu
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "BUILDAH_ISOLATION": "chroot"}


def storage(kind: str) -> Path:
    """containers/storage's record of its images or layers (`kind`: images, layers)."""
    info = json.loads(subprocess.run(["buildah", "info"], env=ENV, capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    store = info["store"]
    return Path(store["GraphRoot"]) / f"{store['GraphDriverName']}-{kind}" / f"{kind}.json"


def main(image: str) -> None:
    out = subprocess.run(["buildah", "inspect", "--type", "image", image], env=ENV,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    info = json.loads(out)
    layers = {layer["id"]: layer for layer in json.loads(storage("layers").read_text())}
    (record,) = [
        i for i in json.loads(storage("images").read_text()) if i["id"] == info["FromImageID"]
    ]
    chain, top = [], record.get("layer")
    while top:
        chain.append(layers[top])
        top = layers[top].get("parent")
    chain.reverse()
    steps = [h for h in info["Docker"]["history"] if not h.get("empty_layer")]
    total = 0
    print(f"| MB | step ({image}) |\n|---:|---|")
    for i, layer in enumerate(chain):
        size = layer.get("diff-size", 0)
        total += size
        step = steps[i]["created_by"] if i < len(steps) else "?"
        step = " ".join(step.replace("|", "\\|").split())[:110]
        print(f"| {size / 1e6:,.0f} | `{step}` |")
    print(f"| **{total / 1e6:,.0f}** | total |")


if __name__ == "__main__":
    main(sys.argv[1])
