"""Evaluation: loss/perplexity, text-overlap metrics, domain metrics and comparisons.

Pure metric functions live in `text_metrics` and `domain`; `generation` runs a model;
`runner` puts them together for `kubetune eval`; `compare` renders A-vs-B reports.
Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any


def after_training(job: Any, model: Any, tokenizer: Any, prepared: Any, **kw: Any) -> Any:
    """The hook `kubetune run` calls after training (see hook.py); imported lazily."""
    from .hook import after_training as run

    return run(job, model, tokenizer, prepared, **kw)
