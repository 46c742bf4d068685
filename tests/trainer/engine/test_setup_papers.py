"""Start-up sizes papers chunks with the base model's own tokenizer.

Data is validated before any model file is read (bad rows cost seconds), so the first
pass can only estimate tokens from characters; once the base and its tokenizer are there,
load_all cuts the papers again so every chunk fits maxSeqLength exactly.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.data import prepare
from kubetune_trainer.data.tokenize import tokenize_text
from kubetune_trainer.engine.setup import load_all
from tests.support.builders import make_job

REPO = Path(__file__).resolve().parents[3]
PAPERS = REPO / "examples" / "data" / "papers" / "papers.json"


def test_papers_are_rechunked_with_the_real_tokenizer(tmp_path: Path) -> None:
    job = make_job(
        tmp_path / "out",
        dataset={"source": str(PAPERS), "format": "papers", "maxSeqLength": 96,
                 "packing": "none", "validation": {"fraction": 0.2}},
    )  # fmt: skip
    estimated = prepare(job)
    assert not estimated.exact_chunks
    said: list[str] = []
    loaded = load_all(job, None, said.append)
    exact = loaded.prepared
    assert exact.exact_chunks and exact.kind == "text"
    assert any("re-chunked with the base's tokenizer" in s for s in said)
    ds = job.spec.dataset
    cut = tokenize_text(exact.train + exact.validation, loaded.tokenizer, ds)
    assert cut.truncated == 0 and max(cut.lengths) <= 96
    # The estimate, measured with the same tokenizer, overshoots: the second pass matters.
    guess = tokenize_text(estimated.train + estimated.validation, loaded.tokenizer, ds)
    assert guess.truncated > 0
    assert exact.fingerprint != estimated.fingerprint  # lineage names the trained chunks
