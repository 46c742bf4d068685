"""Training recipes, one module per objective.

The objective -> module mapping is closed: a FineTuneJob is untrusted input, so a
name selects code from this table and never becomes an import path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kubetune_trainer.errors import ConfigError

RECIPES: dict[str, str] = {
    "sft": "kubetune_trainer.recipes.sft",
    "dpo": "kubetune_trainer.recipes.dpo",
    "ranking": "kubetune_trainer.recipes.ranking",
}


def load_recipe(objective: str) -> ModuleType:
    """The recipe module for `objective`; it exposes build_trainer(ctx) -> Trainer."""
    module = RECIPES.get(objective)
    if module is None:
        raise ConfigError(
            f"spec.objective: {objective!r} has no recipe; use one of {', '.join(RECIPES)}"
        )
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise ConfigError(
            f"spec.objective: the {objective!r} recipe ({module}) is not installed in this "
            "trainer build; use objective sft or a trainer image that includes it"
        ) from None
