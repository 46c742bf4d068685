"""Each format turned into the exact records training receives (all rows kept in train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_trainer.data import prepare
from tests.support.trainer.data import dataset_job, write_jsonl


def records(tmp_path: Path, rows: list[Any], **dataset: Any) -> tuple[Any, str]:
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data = prepare(dataset_job(path, validation={"fraction": 0}, **dataset))
    assert data.validation == [] and data.stats.problems == []
    return data, str(path)


def chat(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


def test_instruction_with_and_without_input(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Summarise the note.", "input": "BP 150/95 on two visits.",
         "output": "Stage 2 hypertension."},
        {"instruction": " Name the drug class of atorvastatin. ", "input": "",
         "output": "A statin."},
    ]  # fmt: skip
    data, src = records(tmp_path, rows)
    assert (data.format, data.kind) == ("instruction", "sft")
    assert data.train == [
        {"prompt": "Summarise the note.\n\nBP 150/95 on two visits.",
         "completion": "Stage 2 hypertension.",
         "messages": chat(("user", "Summarise the note.\n\nBP 150/95 on two visits."),
                          ("assistant", "Stage 2 hypertension.")),
         "meta": {"source": f"{src}:1", "group": "Stage 2 hypertension."}},
        {"prompt": "Name the drug class of atorvastatin.", "completion": "A statin.",
         "messages": chat(("user", "Name the drug class of atorvastatin."),
                          ("assistant", "A statin.")),
         "meta": {"source": f"{src}:2", "group": "A statin."}},
    ]  # fmt: skip


def test_prompt_response_and_prompt_completion(tmp_path: Path) -> None:
    rows = [
        {"prompt": "What lowers LDL?", "response": "Statins and diet."},
        {"prompt": "Normal resting heart rate?", "completion": "60-100 bpm."},
    ]
    data, src = records(tmp_path, rows, format="instruction")
    assert data.train == [
        {"prompt": "What lowers LDL?", "completion": "Statins and diet.",
         "messages": chat(("user", "What lowers LDL?"), ("assistant", "Statins and diet.")),
         "meta": {"source": f"{src}:1", "group": "Statins and diet."}},
        {"prompt": "Normal resting heart rate?", "completion": "60-100 bpm.",
         "messages": chat(("user", "Normal resting heart rate?"), ("assistant", "60-100 bpm.")),
         "meta": {"source": f"{src}:2", "group": "60-100 bpm."}},
    ]  # fmt: skip


def test_qa_with_context(tmp_path: Path) -> None:
    rows = [{"question": "Which gene?", "answer": "BRCA1.", "context": "A 2019 cohort study."}]
    data, src = records(tmp_path, rows)
    prompt = "A 2019 cohort study.\n\nQuestion: Which gene?"
    assert data.train == [
        {"prompt": prompt, "completion": "BRCA1.",
         "messages": chat(("user", prompt), ("assistant", "BRCA1.")),
         "meta": {"source": f"{src}:1", "group": "BRCA1."}},
    ]  # fmt: skip


def test_multi_turn_chat_keeps_every_turn_and_learns_the_last(tmp_path: Path) -> None:
    turns = [("system", "You are a careful nurse."), ("user", "I have a headache."),
             ("assistant", "How long has it lasted?"), ("user", " Two days. "),
             ("assistant", "See a doctor if it persists past three days.")]  # fmt: skip
    data, src = records(tmp_path, [{"messages": chat(*turns)}])
    assert (data.format, data.kind) == ("chat", "sft")
    done = [(role, text.strip()) for role, text in turns]
    assert data.train == [
        {"prompt": "Two days.", "completion": "See a doctor if it persists past three days.",
         "messages": chat(*done),
         "meta": {"source": f"{src}:1", "group": "See a doctor if it persists past three days."}},
    ]  # fmt: skip


def test_preference_pairs(tmp_path: Path) -> None:
    rows = [
        {"prompt": "2+2?", "chosen": "4.", "rejected": "5."},
        {"prompt": "Capital of France?", "chosen": " Paris. ", "rejected": "Lyon."},
    ]
    data, src = records(tmp_path, rows, _objective="dpo")
    assert (data.format, data.kind) == ("preference", "preference")
    assert data.train == [
        {"prompt": "2+2?", "chosen": "4.", "rejected": "5.",
         "meta": {"group": "2+2?", "source": f"{src}:1"}},
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.",
         "meta": {"group": "Capital of France?", "source": f"{src}:2"}},
    ]  # fmt: skip


def test_ranked_responses_stay_best_first(tmp_path: Path) -> None:
    rows = [{"prompt": "Explain LDL.", "responses": ["Best: bad cholesterol, raises risk.",
                                                      "Cholesterol.", "No idea."]}]  # fmt: skip
    data, src = records(tmp_path, rows, _objective="ranking")
    assert (data.format, data.kind) == ("ranked", "ranked")
    assert data.train == [
        {"prompt": "Explain LDL.",
         "responses": ["Best: bad cholesterol, raises risk.", "Cholesterol.", "No idea."],
         "meta": {"group": "Explain LDL.", "source": f"{src}:1"}},
    ]  # fmt: skip


def test_rated_rows_make_pairs_by_margin_and_sft_by_threshold(tmp_path: Path) -> None:
    rows = [
        {"prompt": "P", "output": "ok", "rating": 3},
        {"prompt": "P", "output": "great", "rating": 5},
        {"prompt": "P", "output": "bad", "rating": 1},
        {"prompt": "Q", "output": "fine", "rating": 4},
        {"prompt": "Q", "output": "also fine", "rating": 4},  # no margin: no pair for Q
    ]
    dpo, src = records(tmp_path, rows, _objective="dpo", rated={"pairMargin": 2})
    assert dpo.train == [
        {"prompt": "P", "chosen": "great", "rejected": "ok",
         "meta": {"source": f"{src}:2", "group": "P", "ratings": [5.0, 3.0]}},
        {"prompt": "P", "chosen": "great", "rejected": "bad",
         "meta": {"source": f"{src}:2", "group": "P", "ratings": [5.0, 1.0]}},
        {"prompt": "P", "chosen": "ok", "rejected": "bad",
         "meta": {"source": f"{src}:1", "group": "P", "ratings": [3.0, 1.0]}},
    ]  # fmt: skip
    assert dpo.stats.filtered == 2  # Q's two outputs
    sft, _ = records(tmp_path, rows, format="rated", rated={"minRating": 4})
    assert [(r["prompt"], r["completion"], r["meta"]) for r in sft.train] == [
        ("P", "great", {"source": f"{src}:2", "rating": 5.0, "group": "P"}),
        ("Q", "fine", {"source": f"{src}:4", "rating": 4.0, "group": "Q"}),
        ("Q", "also fine", {"source": f"{src}:5", "rating": 4.0, "group": "Q"}),
    ]
