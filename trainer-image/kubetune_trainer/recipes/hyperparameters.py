"""Each recipe's own hyperparameters, flat (spec.training.dpo / .ranking): in report.json's
hyperparameters and in the registry record.

Light on purpose (no torch, no TRL): the registry asks without loading a recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune_api.spec import FineTuneJob

# Robust DPO's label-flip rate, which the dpo recipe passes to TRL; 0.1 is the value the
# Robust DPO paper recommends (0 would make it identical to sigmoid).
ROBUST_LABEL_SMOOTHING = 0.1


def dpo(job: FineTuneJob) -> dict[str, Any]:
    o = job.spec.training.dpo
    out: dict[str, Any] = {"dpo_beta": o.beta, "dpo_loss_type": o.loss_type}
    if o.loss_type == "robust":  # the flip rate the recipe passes to TRL
        out["dpo_label_smoothing"] = ROBUST_LABEL_SMOOTHING
    return out


def ranking(job: FineTuneJob) -> dict[str, Any]:
    return {"ranking_margin": job.spec.training.ranking.margin}


# objective -> its options; SFT has none beyond the shared training fields.
BY_OBJECTIVE: dict[str, Callable[[FineTuneJob], dict[str, Any]]] = {
    "dpo": dpo,
    "ranking": ranking,
}


def objective_options(job: FineTuneJob) -> dict[str, Any]:
    """The objective's own hyperparameters: dpo_beta, dpo_loss_type, ranking_margin..."""
    answer = BY_OBJECTIVE.get(job.spec.objective)
    return answer(job) if answer is not None else {}
