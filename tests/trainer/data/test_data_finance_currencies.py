"""finance_qa placeholder rule: raw amounts in any currency of the table are caught (by
ISO code or symbol, before or after the number); words, counts and years are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.finance import CURRENCIES, placeholder_violations
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import REPO, dataset_job, write_jsonl

FIN = {
    "question": "Should I hold 7203.T?", "answer": "Hold at <PRICE>.",
    "rationale": "Moved <CHANGE> since <TIMESTAMP>.", "tickers": ["TM"],
    "citations": ["FY2024 report"], "context_required": True, "risk_note": "Not advice.",
}  # fmt: skip

CAUGHT = [
    "¥27,000", "₹1,500", "CHF 90", "1500 JPY", "$182.50", "€90", "£5", "EUR 12", "20 GBP",
    "USD 20", "US$5", "CNY 300", "CN¥300", "300元", "INR 1500", "Rs. 1,500", "KRW 50000",
    "₩50,000", "HK$ 12", "C$ 8.25", "90 €", "Fr. 90",
]  # fmt: skip
KEPT = [
    "1,250 shares", "per the 2023 10-K", "Q3 2024 call", "BRK.B", "3M", "<PRICE>",
    "EURO area demand", "the CHF strengthened", "JPY weakness", "R2 of the fit", "Yrs 5",
    "USD-denominated debt", "<PRICE> in JPY",
]  # fmt: skip


@pytest.mark.parametrize("amount", CAUGHT)
def test_amounts_in_every_currency_are_bad_rows(tmp_path: Path, amount: str) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [FIN, {**FIN, "answer": f"Hold at {amount} today."}])
    with pytest.raises(BadDataError) as err:
        prepare(dataset_job(path, format="finance_qa"))
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}: 1 invalid row(s)")
    assert lines[1] == (
        f"{path}:2: field `answer` has raw value {amount!r} where <PRICE> is required "
        "(context_required is true and no context is given)"
    )


def test_words_counts_and_years_are_kept(tmp_path: Path) -> None:
    rows = [{**FIN, "rationale": f"Moved <CHANGE>; {kept}."} for kept in KEPT]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    data = prepare(dataset_job(path, format="finance_qa", validation={"fraction": 0}))
    assert (data.stats.kept, data.stats.skipped) == (len(KEPT), 0)
    assert all(placeholder_violations(k) == [] for k in KEPT)


def test_the_doc_lists_the_currency_table() -> None:
    doc = (REPO / "docs" / "data-formats.md").read_text(encoding="utf-8").replace("\n", " ")
    for code, symbols in CURRENCIES.items():
        assert f"`{code}` ({', '.join(f'`{s}`' for s in symbols)})" in doc, code
    assert set(CURRENCIES) >= {"USD", "EUR", "GBP", "JPY", "CNY", "INR", "CHF", "KRW"}
