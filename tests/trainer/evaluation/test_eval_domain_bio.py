"""Medical and genomics domain metrics (evaluation.metrics: medical_mcq, genomics): the
option chosen on multiple-choice questions, gene symbols and variants kept (and invented)
in answers, the gene cloze on papers text; selectable by selectBy; refused where they
cannot be measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.loader import parse_job
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.evaluation.domain import domain_metrics
from kubetune_trainer.evaluation.domain_bio import (
    cloze_items,
    gene_cloze_metrics,
    gene_symbols,
    genomics_metrics,
    mcq_metrics,
    variants,
)
from kubetune_trainer.evaluation.models import LoadedModel
from kubetune_trainer.evaluation.runner import evaluate
from kubetune_trainer.evaluation.selection import LOWER_IS_BETTER, check_select_by
from tests.support.trainer.tiny_lm import finance_doc

OPTS = "\nA) Metformin\nB) Lisinopril\nC) Insulin glargine\nD) Aspirin"
MCQ = [
    {"prompt": "First-line drug for hypertension in diabetes?" + OPTS, "completion": "B"},
    {"prompt": "Which lowers HbA1c by replacing basal insulin?" + OPTS,
     "completion": "Answer: C) Insulin glargine"},
    {"prompt": "Which is an antiplatelet agent?" + OPTS, "completion": "(D) Aspirin."},
    {"prompt": "Oral first-line drug for type 2 diabetes?" + OPTS, "completion": "A"},
    # Free-text medical QA (no options): not a multiple-choice question, not counted.
    {"prompt": "What is a normal resting heart rate?", "completion": "60 to 100 per minute."},
]  # fmt: skip


def test_mcq_answer_accuracy_reads_letters_and_option_text() -> None:
    outputs = [
        "The answer is B.",  # letter stated: right
        "Insulin glargine replaces basal insulin.",  # the text of one option: right
        "B) Lisinopril",  # wrong option
        "Metformin or insulin glargine, depending on the patient.",  # two options: no choice
        "A normal rate is 60-100.",
    ]
    m = mcq_metrics(outputs, MCQ)
    assert m == {"answer_accuracy": 2 / 4, "mcq_examples": 4.0}
    assert mcq_metrics(outputs[-1:], MCQ[-1:]) == {"answer_accuracy": None, "mcq_examples": 0.0}


def test_gene_symbols_and_variants_are_found_and_common_acronyms_are_not() -> None:
    text = ("BRAF p.Val600Glu (V600E) and BRCA1 c.68_69delAG in TP53-negative tumours; "
            "rs429358 near APOE; DNA by PCR on GRCh38; HLA-B27 carriers.")  # fmt: skip
    assert variants(text) == {"p.Val600Glu", "V600E", "c.68_69delAG", "rs429358"}
    assert gene_symbols(text) == {"BRAF", "BRCA1", "TP53", "APOE", "HLA-B27"}


def test_genomics_recall_and_invented_variants() -> None:
    records = [
        {"prompt": "Which variant in BRAF?", "completion": "BRAF p.Val600Glu drives the tumour."},
        {"prompt": "Name the BRCA1 variant.", "completion": "BRCA1 c.68_69delAG and TP53."},
    ]
    outputs = ["BRAF p.Val600Glu is the driver.", "BRCA1 c.5266dupC, a frameshift."]
    m = genomics_metrics(outputs, records)
    assert m["gene_symbol_recall"] == 2 / 3  # BRAF, BRCA1 kept; TP53 lost
    assert m["variant_recall"] == 1 / 2  # p.Val600Glu kept; c.68_69delAG lost
    assert m["unsupported_variant_rate"] == 1 / 2  # c.5266dupC is in neither prompt nor ref
    assert m["genomic_entity_examples"] == 2.0
    assert "unsupported_variant_rate" in LOWER_IS_BETTER


def test_formats_metrics_and_the_selected_extras_combine() -> None:
    outs = ["B", "C", "D", "A", "x"]
    assert "answer_accuracy" not in domain_metrics("qa", outs, MCQ)
    both = domain_metrics("qa", outs, MCQ, ["medical_mcq", "genomics"])
    assert both["answer_accuracy"] == 1.0 and both["exact_match"] == 2 / 5
    assert "gene_symbol_recall" in both


def _job(tmp_path: Path, base: str = "builtin:tiny-llama", **evaluation: Any) -> Any:
    data = tmp_path / "d.jsonl"
    doc = finance_doc(data, base, evaluation={"maxSamples": 4, **evaluation})
    doc["spec"]["dataset"]["format"] = "qa"
    return parse_job(doc)


def test_select_by_accepts_the_selected_metrics_only(tmp_path: Path) -> None:
    check_select_by(_job(tmp_path, metrics=["medical_mcq"], selectBy="answer_accuracy"),
                    "sft", "qa", MCQ)  # fmt: skip
    with pytest.raises(ConfigError, match=r"not measured for dataset format 'qa'.*exact_match"):
        check_select_by(_job(tmp_path, selectBy="answer_accuracy"), "sft", "qa", MCQ)
    with pytest.raises(ConfigError, match=r"evaluation\.metrics.*'preference' records"):
        check_select_by(_job(tmp_path, metrics=["genomics"]), "preference", "preference", MCQ)
    with pytest.raises(ValueError, match="radiology"):
        _job(tmp_path, metrics=["radiology"])


PAPERS = [
    {"text": "Germline variants were studied in a hereditary cohort using panel sequencing "
             "of several genes. The strongest signal was BRCA1 c.68_69delAG in carriers."},
    {"text": "Tumour samples were sequenced at high depth and aligned to the reference "
             "build with care; the driver was BRAF, with no other recurrent events."},
    {"text": "Too short: TP53."},
]  # fmt: skip


def test_gene_cloze_items_and_accuracy_on_a_real_model(tiny_dirs: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    items = cloze_items(PAPERS, limit=8)
    # The first name after 80 characters of each long-enough text.
    assert [name for _, name in items] == ["BRCA1", "BRAF"]
    assert items[0][0].endswith("was ") and items[1][0].endswith("the driver was ")
    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["base"]))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["base"])).eval()
    lm = LoadedModel(model, tok, str(tiny_dirs["base"]), None)
    m = gene_cloze_metrics(lm, PAPERS, limit=8)
    assert m["gene_cloze_examples"] == 2.0 and m["gene_cloze_accuracy"] in (0.0, 0.5, 1.0)


def test_evaluate_reports_the_selected_metrics(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["base"]))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dirs["base"])).eval()
    tok.padding_side = "left"
    lm = LoadedModel(model, tok, str(tiny_dirs["base"]), None)
    job = _job(tmp_path, str(tiny_dirs["base"]), metrics=["medical_mcq", "genomics"],
               generation={"maxNewTokens": 4})  # fmt: skip
    result = evaluate(lm, job, "sft", "qa", MCQ)
    m = result["metrics"]
    assert m["mcq_examples"] == 4.0 and m["answer_accuracy"] is not None
    assert {"gene_symbol_recall", "variant_recall", "unsupported_variant_rate"} <= set(m)
    text = evaluate(lm, _job(tmp_path, str(tiny_dirs["base"]), metrics=["genomics"]), "text",
                    "papers", PAPERS)  # fmt: skip
    assert text["metrics"]["gene_cloze_examples"] == 2.0
    json.dumps(result)  # JSON-ready for report.json
