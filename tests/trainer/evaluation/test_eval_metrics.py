"""Metric values on inputs small enough to check by hand."""

from __future__ import annotations

import json
import math

import pytest

from kubetune_trainer.evaluation.domain import (
    domain_metrics,
    finance_metrics,
    parse_recommendation,
    realized_action,
    trading_metrics,
)
from kubetune_trainer.evaluation.text_metrics import bleu, exact_match, rouge_l


def test_rouge_l_is_lcs_f1() -> None:
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: P = 5/5, R = 5/6.
    f1 = 2 * 1.0 * (5 / 6) / (1.0 + 5 / 6)
    assert rouge_l(["the cat on the mat"], ["the cat sat on the mat"]) == pytest.approx(f1)
    # Mean over examples: one perfect, one with nothing in common.
    assert rouge_l(["a b", "x y"], ["a b", "c d"]) == pytest.approx(0.5)


def test_bleu_identity_and_brevity() -> None:
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    # 4 of 4 n-gram precisions are 1 but the hypothesis is 4 tokens vs 6: BP = e^(1 - 6/4).
    got = bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert got == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-6)


def test_exact_match_normalizes_case_punctuation_articles() -> None:
    preds = ["The Eiffel Tower.", "paris", "london"]
    refs = ["eiffel tower", "Paris!", "Berlin"]
    assert exact_match(preds, refs) == pytest.approx(2 / 3)


def test_parallel_lists_required() -> None:
    with pytest.raises(ValueError, match="parallel"):
        rouge_l(["a"], ["a", "b"])


GOOD = (
    "Answer: AAPL trades near <PRICE>.\nRationale: Revenue grew 8 percent in 2023.\n"
    "Citations: [1] 10-K 2023; [2] Q4 call\nRisk: Not investment advice."
)
# GOOD with no raw value: "8 percent" is a raw <CHANGE> where placeholders are required.
LIVE = GOOD.replace(" 8 percent", "")
LEAKY = "Answer: AAPL is at $182.50 now.\nRationale: it rose 3 times.\nCitations:\nRisk:"


def test_finance_metrics_by_hand() -> None:
    records = [
        # Placeholders required (the reference uses them), context-free prompt.
        {"prompt": "Price of AAPL?\nTickers: AAPL", "completion": "Answer: <PRICE>"},
        {"prompt": "Price of AAPL?\nTickers: AAPL", "completion": "Answer: <PRICE>"},
        # Context given: numbers from the context are supported.
        {"prompt": "Growth?\nTickers: AAPL\nContext: grew 8 percent in 2023", "completion": "x"},
    ]
    outputs = [LIVE, LEAKY, GOOD]
    m = finance_metrics(outputs, records)
    assert m["format_compliance"] == pytest.approx(2 / 3)  # LEAKY has empty sections
    assert m["citation_rate"] == pytest.approx(2 / 3)
    assert m["risk_note_rate"] == pytest.approx(2 / 3)
    # Two examples needed placeholders; one leaked $182.50.
    assert m["placeholder_examples"] == 2
    assert m["placeholder_compliance"] == pytest.approx(1 / 2)
    assert m["placeholder_use_rate"] == pytest.approx(1 / 2)  # LIVE says <PRICE>, LEAKY none
    # LIVE quotes 2023, absent from prompt 1 (unsupported); GOOD quotes 8 and 2023, both in
    # prompt 3; LEAKY quotes 182.50 and 3, absent from its prompt.
    assert m["unsupported_number_rate"] == pytest.approx(2 / 3)


def test_context_required_meta_wins_over_reference() -> None:
    rec = {
        "prompt": "Q\nTickers: MSFT",
        "completion": "Answer: fine",
        "meta": {"context_required": True},
    }
    m = finance_metrics([LEAKY], [rec])
    assert m["placeholder_examples"] == 1 and m["placeholder_compliance"] == 0.0


def _answer(text: str) -> str:
    return f"Answer: {text}\nRationale: r\nCitations: [1] c\nRisk: n"


def test_placeholder_use_counts_only_required_placeholders() -> None:
    ask = "Q?\nTickers: KO"
    records = [
        {"prompt": ask, "completion": "Answer: KO at <PRICE>."},
        {"prompt": ask, "completion": "Answer: KO moved <CHANGE> to <PRICE>."},
        {"prompt": ask, "completion": "Answer: as of <TIMESTAMP>."},
        {"prompt": ask, "completion": "Answer: KO is a beverage company."},  # none needed
        {"prompt": ask, "completion": "Answer: fine", "meta": {"context_required": True}},
    ]
    outputs = [
        _answer("KO trades at <PRICE>."),  # the reference's placeholder: used
        _answer("Not known at <TIMESTAMP>, it was $10.50."),  # another one, and a leak
        _answer("The data is not available."),  # no number leaked, but no placeholder
        _answer("KO is at <PRICE>."),  # not required here: not counted at all
        _answer("KO moved <CHANGE>."),  # meta only: any placeholder is the required kind
    ]
    m = finance_metrics(outputs, records)
    assert m["placeholder_examples"] == 4
    assert m["placeholder_use_rate"] == pytest.approx(2 / 4)
    # The old measure passes the placeholder-free answer 3: only answer 2 leaked a value.
    assert m["placeholder_compliance"] == pytest.approx(3 / 4)
    # An answer with no placeholder at all scores full compliance but zero use.
    bare = finance_metrics([_answer("I cannot say.")], records[:1])
    assert (bare["placeholder_compliance"], bare["placeholder_use_rate"]) == (1.0, 0.0)
    none_needed = finance_metrics([_answer("x")], records[3:4])
    # Over zero examples a rate is None (null), not 0.0 (issue 26).
    assert (none_needed["placeholder_examples"], none_needed["placeholder_use_rate"]) == (0, None)


def _rec(action: str, confidence: object) -> str:
    return json.dumps({"action": action, "target_price": 1.0, "confidence": confidence})


def test_parse_recommendation() -> None:
    assert parse_recommendation("Sure. " + _rec("buy", 0.8)) == ("buy", 0.8)
    assert parse_recommendation(_rec("sell", 1.5)) == ("sell", None)  # not a probability
    assert parse_recommendation(_rec("short", 0.5)) == (None, None)  # not an action
    assert parse_recommendation("I would hold for now.") == (None, None)  # not the layout


def test_realized_action_from_return_and_band() -> None:
    assert realized_action({"forward_return_pct": 2.5}) == "buy"
    assert realized_action({"forward_return_pct": -2.5}) == "sell"
    assert realized_action({"forward_return_pct": 0.4}) == "hold"
    assert realized_action({"forward_return": 0.03}) == "buy"  # a fraction, not percent
    assert realized_action({"realized_label": "sell", "forward_return_pct": 9.0}) == "sell"
    assert realized_action({}) is None


def test_trading_metrics_by_hand() -> None:
    records = [
        {"meta": {"forward_return_pct": 3.0}},  # buy
        {"meta": {"forward_return_pct": -3.0}},  # sell
        {"meta": {"forward_return_pct": 0.1}},  # hold
        {"meta": {}},  # no realized return: not judged
    ]
    outputs = [
        _rec("buy", 0.9),  # right, (0.9-1)^2 = 0.01
        _rec("buy", 0.6),  # wrong, (0.6-0)^2 = 0.36
        "gibberish",  # unparsed
        _rec("sell", 0.5),  # parsed, no truth
    ]
    m = trading_metrics(outputs, records)
    assert m["recommendation_parse_rate"] == pytest.approx(3 / 4)
    assert m["direction_examples"] == 2
    assert m["direction_accuracy"] == pytest.approx(1 / 2)
    assert m["brier_score"] == pytest.approx((0.01 + 0.36) / 2)


def test_domain_dispatch() -> None:
    assert domain_metrics("qa", ["Paris"], [{"completion": "paris."}]) == {"exact_match": 1.0}
    assert domain_metrics("papers", ["x"], [{"text": "x"}]) == {}
