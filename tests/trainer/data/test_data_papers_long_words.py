"""papers: an unbroken span longer than maxSeqLength (a DNA sequence) is split by tokens
into chunks that fit, its pieces glued back without spaces."""

from __future__ import annotations

import json
import random
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.papers import GLUE, approx_tokens
from tests.support.trainer.data import dataset_job


def dna_paper(tmp_path: Path, n: int = 200_000) -> tuple[Path, str]:
    rnd = random.Random(5)
    seq = "".join(rnd.choice("ACGT") for _ in range(n))
    paper = {"title": "A genome", "abstract": f"We sequenced it. {seq} The end of the study."}
    path = tmp_path / "p.json"
    path.write_text(json.dumps([paper]))
    return path, seq


def body(chunk: str) -> str:
    return chunk.split("\n\n", 1)[1]


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_a_long_unbroken_span_is_split_to_fit(
    tmp_path: Path, tokenizer: Any, with_tokenizer: bool
) -> None:
    n = 200_000 if not with_tokenizer else 20_000
    path, seq = dna_paper(tmp_path, n)
    tok = tokenizer if with_tokenizer else None
    job = dataset_job(path, format="papers", maxSeqLength=128, validation={"fraction": 0})
    chunks = [r["text"] for r in prepare(job, tok).train]
    assert len(chunks) > n // (4 * 128)  # many chunks, not one giant one
    for chunk in chunks:
        assert GLUE not in chunk
        if tok is None:
            assert sum(approx_tokens(w) for w in chunk.split()) <= 128
        else:
            assert len(tok(chunk)["input_ids"]) <= 127  # EOS follows
        text = body(chunk)
        for word in text.split():  # every piece is a run of the sequence, no space inside
            if set(word) <= set("ACGT") and len(word) > 4:
                assert word in seq
    # The runs, in chunk order, cover the sequence end to end without a hole.
    runs = [w for c in chunks for w in body(c).split() if set(w) <= set("ACGT") and len(w) > 4]
    spans = [(seq.find(r), seq.find(r) + len(r)) for r in runs]
    assert spans[0][0] == 0 and spans[-1][1] == len(seq)
    assert all(a[0] <= b[0] <= a[1] for a, b in pairwise(spans))
    assert body(chunks[0]).startswith("We sequenced it. ")
    assert body(chunks[-1]).endswith(" The end of the study.")
