"""Model families end to end: a tiny model per family, trained once per session.

Jobs come from tests/support (builders, trainer/families); every family's base is a local
folder built by kubetune_trainer.modeling.families.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.builders import qa_records
from tests.support.trainer.families import train


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny models on a shared 2-core box: one thread beats two that fight."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def _family_env(model_cache: Path) -> Iterator[None]:
    """Offline, in the session's model cache (session-wide: the fixtures below are too)."""
    saved = {k: os.environ.get(k) for k in ("KUBETUNE_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(KUBETUNE_CACHE=str(model_cache), HF_HUB_OFFLINE="1")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def family_base(_family_env: None) -> Callable[[str], Path]:
    """family -> folder of its tiny random-weight model + tokenizer (built once)."""
    from kubetune_trainer.modeling.families import build_tiny

    texts = [r["prompt"] + " " + r["completion"] for r in qa_records(200, 3)]
    return lambda family: build_tiny(family, texts, seed=0)


@pytest.fixture(scope="session")
def family_trained(
    family_base: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """family -> {base, adapter, merged, result}: a LoRA run and its merge, once per family."""
    from kubetune_trainer.export.merge import merge_adapter

    done: dict[str, dict[str, Any]] = {}

    def get(family: str) -> dict[str, Any]:
        if family not in done:
            root = tmp_path_factory.mktemp(f"fam-{family}")
            base = family_base(family)
            os.environ["KUBETUNE_TERMINATION_LOG"] = str(root / "termination-log")
            result = train(base, root / "out")
            adapter = Path(result.run_uri) / "adapter"
            merge_adapter(str(adapter), root / "merged")
            done[family] = {"base": base, "adapter": adapter, "merged": root / "merged",
                            "result": result}  # fmt: skip
        return done[family]

    return get
