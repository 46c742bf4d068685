"""rated, preference and ranked rows.

- preference: {prompt, chosen, rejected} -> preference records (dpo).
- ranked:     {prompt, responses: [best, ..., worst]} (at least 2, distinct) -> ranked records.
- rated:      {prompt, output, rating}. For sft, rows rated at or above `rated.minRating`
  become SFT records. For dpo, rows are grouped by prompt and every pair of outputs whose
  ratings differ by at least `rated.pairMargin` becomes (chosen=higher, rejected=lower).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import combinations

from kubetune_api.spec_data import RatedOptions

from ..report import Problems
from ..sources import Row
from .base import Context, Record, each_row, number, sft, str_list, text


def preference_row(d: Record, row: Row) -> list[Record]:
    check = Problems()
    prompt, chosen = check(text, d, "prompt"), check(text, d, "chosen")
    rejected = check(text, d, "rejected")
    if chosen is not None and chosen == rejected:
        check.add("`chosen` and `rejected` are identical")
    check.done()
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected, "meta": {"group": prompt}}]


def ranked_row(d: Record, row: Row) -> list[Record]:
    check = Problems()
    prompt = check(text, d, "prompt")
    responses = check(str_list, d, "responses", min_len=2) or []
    if len(set(responses)) != len(responses):
        check.add("field `responses` has duplicates; list distinct responses best first")
    check.done()
    return [{"prompt": prompt, "responses": responses, "meta": {"group": prompt}}]


def _rated(d: Record, row: Row) -> list[Record]:
    check = Problems()
    rating = check(number, d, "rating")
    prompt, output = check(text, d, "prompt"), check(text, d, "output")
    check.done()
    return [{"prompt": prompt, "output": output, "rating": rating}]


def rated_records(rows: Iterable[Row], ctx: Context) -> Iterator[Record]:
    opts = ctx.dataset.rated or RatedOptions()
    rated = each_row(rows, ctx, _rated)
    if ctx.kind == "sft":
        for r in rated:
            if r["rating"] >= opts.min_rating:
                meta = {**r["meta"], "rating": r["rating"], "group": r["prompt"]}
                yield {**sft(r["prompt"], r["output"]), "meta": meta}
            else:
                ctx.report.filter(f"rated.minRating {opts.min_rating} (rated below)")
        return
    by_prompt: dict[str, list[Record]] = {}
    for r in rated:
        by_prompt.setdefault(r["prompt"], []).append(r)
    for prompt, outs in by_prompt.items():
        best: dict[str, Record] = {}
        for r in outs:  # the same output rated twice: keep its best rating
            if r["output"] not in best or r["rating"] > best[r["output"]]["rating"]:
                best[r["output"]] = r
        ranked = sorted(best.values(), key=lambda r: -r["rating"])
        pairs = 0
        for hi, lo in combinations(ranked, 2):
            if hi["rating"] - lo["rating"] >= opts.pair_margin:
                pairs += 1
                yield {
                    "prompt": prompt, "chosen": hi["output"], "rejected": lo["output"],
                    "meta": {"source": hi["meta"]["source"], "group": prompt,
                             "ratings": [hi["rating"], lo["rating"]]},
                }  # fmt: skip
        if not pairs:
            rule = f"rated.pairMargin {opts.pair_margin} (no pair of its prompt's outputs)"
            ctx.report.filter(rule, len(outs))
