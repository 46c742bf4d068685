"""Fixtures for the image checks: the built images unpacked once per session (buildah) and
run as containers (crun; see containers.py), writable volumes owned by UID 1000.

With CI set (make test), a missing buildah/crun or an unbuilt image FAILS the checks: `make
test` builds the images first (`make images`). Locally they are skipped instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containers import (
    OPERATOR_IMAGE,
    TRAINER_IMAGE,
    Rootfs,
    image_exists,
    tools_missing,
)

UID = 1000


def _unavailable(image: str) -> str | None:
    if missing := tools_missing():
        return f"{', '.join(missing)} not installed (make images installs them)"
    if not image_exists(image):
        return f"image {image} not built (run `make images`)"
    return None


def _open(image: str) -> Iterator[Rootfs]:
    if why := _unavailable(image):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}", pytrace=False)
        pytest.skip(why)
    rootfs = Rootfs.open(image)
    try:
        yield rootfs
    finally:
        rootfs.close()


@pytest.fixture(scope="session")
def trainer_image() -> Iterator[Rootfs]:
    yield from _open(TRAINER_IMAGE)


@pytest.fixture(scope="session")
def operator_image() -> Iterator[Rootfs]:
    yield from _open(OPERATOR_IMAGE)


def owned_dir(path: Path) -> Path:
    """A host folder the container's user can write (an emptyDir of the pod)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    return path


@pytest.fixture
def volumes(tmp_path: Path) -> dict[str, Path]:
    """The pod's writable volumes: /tmp and /cache (as the chart and the operator mount them)."""
    return {"/tmp": owned_dir(tmp_path / "tmp"), "/cache": owned_dir(tmp_path / "cache")}
