"""papers: careful cleaning, section-aware chunking, quality filter, classification."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.data.formats.papers_text import clean, sections
from kubetune_trainer.data.tokenize import tokenize_text
from tests.support.trainer.data import REPO, dataset_job

SAMPLE = REPO / "examples" / "data" / "papers" / "papers.json"
SYMBOLS = ["BRCA1", "TP53", "p.Val600Glu", "rs429358", "ACGTTGCA", "c.68_69delAG",
           "c.-78A>G", "[Ca2+]", "10⁻⁸", "APOE ε4", "5′-ACGTTGCA-3′"]  # fmt: skip


def test_clean_keeps_biology_and_fixes_extraction_noise() -> None:
    raw = (
        "Germline BRCA1 and TP53 vari-\nants (p.Val600Glu, rs429358) alter geno-\nmic "
        "stability [12]. The BRCA1-\nassociated domain binds 5′-ACGTTGCA-3′ [3, 4] at "
        "p < 10⁻⁸ with ﬁxed [Ca2+] and ＡＰＯＥ\u00a0ε4 [5–7]; c.68_69delAG and c.-78A>G.\n\n"
        "Second   paragraph\nhere.\n\nReferences\n1. Smith J. Nature. 2020;1:1-2."
    )
    out = clean(raw)
    for sym in SYMBOLS:
        assert sym in out, sym
    assert "variants" in out and "genomic stability." in out
    assert "BRCA1-associated" in out
    assert "fixed" in out and "ﬁ" not in out
    assert "[12]" not in out and "[3, 4]" not in out and "[5–7]" not in out
    assert "Smith" not in out and "References" not in out
    assert out.endswith("c.-78A>G.\n\nSecond paragraph here.")
    assert "[12]" in clean(raw, drop_citations=False)


def test_sections_follow_headings() -> None:
    text = "Intro text.\nIntroduction\nA.\n\n2. Materials and Methods\nB.\n## Results\nC.\n"
    assert [name for name, _ in sections(text)] == [
        "Body", "Introduction", "Materials and Methods", "Results"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "heading", ["## References", "5. References", "REFERENCES", "Bibliography",
                "6.1 Literature Cited", "References:"],
)  # fmt: skip
def test_reference_lists_are_dropped_in_every_heading_style(tmp_path: Path, heading: str) -> None:
    full = (
        "## Introduction\nTP53 loss drives the phenotype.\n\n4. Discussion\n"
        f"BRCA1 carriers differ.\n\n{heading}\n1. Smith J. Cancer genomics. Nature. 2020.\n"
        "2. Doe A. Variants. Cell. 2019.\n"
    )
    assert [name for name, _ in sections(full)] == ["Introduction", "Discussion"]
    paper = {"title": "T", "abstract": "ACGTTGCA motifs.", "full_text": full, "doi": "10.1/x"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps([paper]))
    data = prepare(dataset_job(path, format="papers", validation={"fraction": 0}))
    texts = [r["text"] for r in data.train]
    assert [r["meta"]["section"] for r in data.train] == ["Abstract", "Introduction", "Discussion"]
    assert texts[-1].endswith("Section: Discussion\n\nBRCA1 carriers differ.")
    assert not any("Smith" in t or "Doe" in t or heading.split()[-1] in t for t in texts)


def test_chunks_fit_tokens_and_overlap(tokenizer: Any) -> None:
    job = dataset_job(SAMPLE, max_seq_length=96, papers={"chunkOverlap": 16})
    data = prepare(job, tokenizer=tokenizer)
    chunks = data.train + data.validation
    assert data.kind == "text" and len(chunks) > 40
    ids = tokenize_text(chunks, tokenizer, job.spec.dataset)
    assert ids.truncated == 0 and max(ids.lengths) <= 96
    assert max(ids.lengths) > 60  # chunks are filled, not tiny
    # Chunks of one section share text at their seams.
    pairs = [(a, b) for a, b in pairwise(chunks)
             if a["meta"]["group"] == b["meta"]["group"]
             and a["meta"]["section"] == b["meta"]["section"]]  # fmt: skip
    assert pairs
    for a, b in pairs:
        body_a, body_b = a["text"].split("\n\n", 1)[1], b["text"].split("\n\n", 1)[1]
        assert body_a.split()[-1] in body_b.split()[:12]
    assert all(r["text"].startswith("Title: ") for r in chunks)
    assert {r["meta"]["section"] for r in chunks} >= {"Abstract", "Methods", "Results"}
    assert not any("References" in r["text"] or "Author A" in r["text"] for r in chunks)
    # A paper never straddles the split.
    assert not {r["meta"]["group"] for r in data.train} & {
        r["meta"]["group"] for r in data.validation}  # fmt: skip


def test_approximate_chunking_without_tokenizer() -> None:
    data = prepare(dataset_job(SAMPLE, max_seq_length=64))
    assert all(len(r["text"]) / 4 <= 64 * 1.3 for r in data.train)


def test_min_quality_and_classification() -> None:
    data = prepare(dataset_job(SAMPLE, papers={"minQuality": 0.7}))
    papers = json.loads(SAMPLE.read_text())
    kept = {p["doi"] for p in papers if p["quality"] >= 0.7}
    assert {r["meta"]["group"] for r in data.train + data.validation} == kept
    assert data.stats.filtered == len(papers) - len(kept)
    cls = prepare(
        dataset_job(
            SAMPLE,
            papers={"labelField": "label"},
            _model={"task": "sequence_classification", "numLabels": 3},
        )
    )
    assert cls.kind == "classification" and len(cls.train) + len(cls.validation) == 12
    assert cls.label_names == ["cancer-genomics", "functional-genomics", "population-genetics"]
    by_title = {p["title"]: p["label"] for p in papers}
    for r in cls.train + cls.validation:
        title, body = r["text"].split("\n\n", 1)
        assert cls.label_names[r["label"]] == by_title[title]
        assert body.startswith("We studied") and "[1]" not in body


@pytest.mark.parametrize(
    ("paper", "reason"),
    [
        ({"abstract": "x"}, "missing field `title`"),
        ({"title": "T"}, "neither `abstract` nor `full_text`"),
        ({"title": "T", "abstract": "x", "year": "2020"}, "field `year` must be a year"),
        ({"title": "T", "abstract": "x", "quality": "high"}, "field `quality` must be a number"),
        ({"title": "T", "abstract": "x", "authors": "A. B."}, "`authors` must be a list"),
        ({"title": "T", "abstract": "[1] [2]"}, "no text left after cleaning"),
    ],
)
def test_bad_papers(tmp_path: Path, paper: dict, reason: str) -> None:
    good = {"title": "Good", "abstract": "BRCA1 matters."}
    path = tmp_path / "p.json"
    path.write_text("[\n" + ",\n".join(json.dumps(p) for p in [good, good, paper]) + "\n]")
    data = prepare(dataset_job(path, format="papers", bad_rows="skip"))
    assert len(data.stats.problems) == 1
    assert data.stats.problems[0].startswith(f"{path}:4: ")
    assert reason in data.stats.problems[0]
