"""What every recipe receives, and the pieces recipes share.

The engine loads the model, attaches LoRA, builds the TrainingArguments keywords and
the callbacks (checkpoint commit, SIGTERM, logging, early stopping); a recipe only
turns records into a dataset and builds its Trainer (transformers Trainer, a TRL
trainer or a Trainer subclass) from this context. Recipes add their own options to
`args_kwargs` (e.g. DPOConfig(beta=...)) and must pass `callbacks` through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune_api.spec import FineTuneJob
from kubetune_trainer.records import PreparedDataset


@dataclass
class RecipeContext:
    job: FineTuneJob
    model: Any  # a peft model: base frozen, adapter trainable
    tokenizer: Any
    prepared: PreparedDataset
    args_kwargs: dict[str, Any]  # TrainingArguments keywords resolved by the engine
    callbacks: list[Any] = field(default_factory=list)
    precision: str = "fp32"

    @property
    def spec(self) -> Any:
        return self.job.spec


@dataclass
class BuiltTrainer:
    trainer: Any  # transformers.Trainer or subclass
    train_examples: int
    eval_examples: int
    train_tokens: int  # real (non-pad) tokens in one pass over the training set
