"""`kubetune prepare --show N`: examples as the model sees them, prompt and completion apart,
masked tokens marked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from kubetune_trainer.cli import main
from tests.support.trainer.data import job_dict, write_jsonl

QA = [{"question": f"What is test {i}?", "answer": f"Result {i}."} for i in range(6)]


def run(tmp_path: Path, job: dict[str, Any], *args: str) -> Any:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    return CliRunner().invoke(main, ["prepare", str(tmp_path / "job.yaml"),
                                     "--out", str(tmp_path / "out"), *args])  # fmt: skip


def test_show_prints_examples_as_tokenized(tmp_path: Path, tokenizer: Any) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)), template="alpaca",
                   validation={"fraction": 0})  # fmt: skip
    job["spec"]["model"]["base"] = str(tmp_path / "tok")
    res = run(tmp_path, job, "--show", "2")
    assert res.exit_code == 0, res.output
    shown = res.output.split("=== example 1 (")[1]
    first = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    prompt = (
        "Below is an instruction that describes a task. Write a response that "
        f"appropriately completes the request.\n\n### Instruction:\n{first['prompt']}\n\n"
        "### Response:\n"
    )
    p_ids = tokenizer(prompt)["input_ids"]
    c_ids = [
        *tokenizer(first["completion"], add_special_tokens=False)["input_ids"],
        tokenizer.eos_token_id,
    ]
    lines = shown.splitlines()
    assert lines[0] == f"{first['meta']['source']}) ==="
    assert lines[1] == f"{len(p_ids) + len(c_ids)} tokens"
    assert lines[2] == f"--- prompt: {len(p_ids)} tokens, masked (label -100, no loss) ---"
    head = f"\n--- completion: {len(c_ids)} tokens, trained (loss) ---\n"
    body = "\n".join(lines[3:]).split(head)
    assert body[0] == tokenizer.decode(p_ids) == prompt
    assert body[1].startswith(f"{first['completion']}</s>\n")
    assert "=== example 2 (" in res.output and "=== example 3 (" not in res.output


def test_show_without_a_tokenizer_prints_the_rendered_text(tmp_path: Path) -> None:
    job = job_dict(str(write_jsonl(tmp_path / "qa.jsonl", QA)), validation={"fraction": 0},
                   completionOnlyLoss=False)  # fmt: skip
    job["spec"]["model"]["base"] = str(tmp_path / "no-model")
    res = run(tmp_path, job, "--show", "1")
    assert res.exit_code == 0, res.output
    assert "tokens not shown: no tokenizer could be loaded offline for " in res.output
    tail = res.output.split("=== example 1 (")[1].splitlines()
    assert tail[1] == "--- prompt, trained ---"
    assert tail[tail.index("--- completion, trained ---") + 1] == "Result 0."
