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
    data_store: Any = None  # the run's Store: the tokenized-data cache lives under it

    @property
    def spec(self) -> Any:
        return self.job.spec


@dataclass
class Truncation:
    """How many examples were longer than dataset.maxSeqLength, and how they were cut.

    An example counts once, however many of its sequences were cut (a DPO pair whose
    chosen and rejected answers both were, a ranked list with several long responses).
    """

    max_length: int
    policy: str  # what is kept of a long example, as the recipe's tokenization does it
    train: int = 0  # training examples cut
    train_total: int = 0
    validation: int = 0
    validation_total: int = 0
    dropped: int = 0  # examples of either split left out (DPO: the prompt fills the budget)
    unit: str = "examples"

    def _units(self, n: int) -> str:
        return self.unit if n != 1 else self.unit.removesuffix("s")

    def summary(self) -> str:
        """truncated: N of M training examples longer than maxSeqLength L (V of W
        validation); <policy>[; K examples left out entirely (...)]"""
        line = (
            f"truncated: {self.train} of {self.train_total} training "
            f"{self._units(self.train_total)} longer than maxSeqLength {self.max_length}"
        )
        if self.validation_total:
            line += f" ({self.validation} of {self.validation_total} validation)"
        line += f"; {self.policy}"
        if self.dropped:
            line += (
                f"; {self.dropped} {self._units(self.dropped)} left out entirely (the prompt "
                "alone fills maxSeqLength)"
            )
        return line

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "train_total": self.train_total,
            "validation": self.validation,
            "validation_total": self.validation_total,
            "dropped": self.dropped,
            "max_seq_length": self.max_length,
            "policy": self.policy,
        }


@dataclass
class BuiltTrainer:
    trainer: Any  # transformers.Trainer or subclass
    train_examples: int
    eval_examples: int
    train_tokens: int  # real (non-pad) tokens in one pass over the training set
    truncation: Truncation | None = None
