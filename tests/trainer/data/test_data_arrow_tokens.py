"""The Arrow store holds exactly what tokenize.py gives (ids, labels, truncation, lengths),
as int32 memory-mapped, and with workers the same result as in process."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.spec_data import DatasetSpec
from kubetune_trainer.data.arrow_tokens import ArrowTokens, tokenize_to_arrow
from kubetune_trainer.data.tokenize import tokenize

WORDS = ["blood", "pressure", "statins", "diet", "genome", "LDL", "heart", "risk", "what"]


def spec(**kw: Any) -> DatasetSpec:
    return DatasetSpec(source="x.jsonl", **kw)


def _sft_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rnd = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(k))

    out: list[dict[str, Any]] = []
    for i in range(n):
        if i % 5 == 0:  # a chat record with a system turn and two exchanges
            msgs = [{"role": "user", "content": text(3)}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": text(rnd.randint(1, 40))},
                    {"role": "assistant", "content": text(rnd.randint(1, 30))}]  # fmt: skip
            out.append({"messages": msgs, "meta": {"line": i}})
        else:
            out.append({"prompt": text(rnd.randint(1, 60)), "completion": text(rnd.randint(1, 25)),
                        "meta": {"line": i}})  # fmt: skip
    return out


def _same(arrow: ArrowTokens, want: Any) -> None:
    assert len(arrow) == len(want)
    assert arrow.truncated == want.truncated
    assert arrow.lengths == want.lengths
    for i in range(len(want)):
        assert arrow[i] == want[i], i


@pytest.mark.parametrize(
    "options",
    [
        {"template": "plain", "max_seq_length": 160},
        {"template": "alpaca", "max_seq_length": 240, "completion_only_loss": False},
        {"template": "auto", "max_seq_length": 200, "system_prompt": "Be brief."},
    ],
)
def test_sft_ids_labels_and_truncation_match_the_list_tokenizer(
    tokenizer: Any, chat_tokenizer: Any, tmp_path: Path, options: dict[str, Any]
) -> None:
    records = _sft_records(120)
    for tok in (tokenizer, chat_tokenizer):
        ds = spec(**options)
        want = tokenize("sft", records, tok, ds)
        assert 0 < want.truncated < len(records)  # both paths of the truncation rule run
        # Both paths run tokenize.py's batch functions: a batch of many gives each example
        # what it gets alone (nothing shifts or leaks between a batch's examples).
        alone = [tokenize("sft", [r], tok, ds)[0] for r in records[:40]]
        assert alone == [want[i] for i in range(40)]
        got = tokenize_to_arrow("sft", records, tok, ds, tmp_path / f"{id(tok)}", num_proc=None)
        _same(got, want)


def test_turns_with_more_than_role_and_content_reach_the_template(
    chat_tokenizer: Any, tmp_path: Path
) -> None:
    # The records file keeps plain turns as role/content columns; a turn with other keys
    # (here a name the template writes) must reach the template whole.
    import copy

    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{% if m.get('name') %}({{ m['name'] }})"
        "{% endif %}{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    records = _sft_records(30, seed=2)
    records[3] = {"messages": [{"role": "user", "content": "what", "name": "genome"},
                               {"role": "assistant", "content": "risk"}]}  # fmt: skip
    ds = spec(template="chat", max_seq_length=200)
    want = tokenize("sft", records, tok, ds)
    assert "(genome)" in tok.decode(want[3]["input_ids"])
    _same(tokenize_to_arrow("sft", records, tok, ds, tmp_path / "a", num_proc=None), want)


def test_text_and_classification_match(tokenizer: Any, tmp_path: Path) -> None:
    rnd = random.Random(3)
    texts = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 30))) for _ in range(50)]
    ds = spec(max_seq_length=16)
    text = [{"text": t} for t in texts]
    _same(tokenize_to_arrow("text", text, tokenizer, ds, tmp_path / "t", num_proc=None),
          tokenize("text", text, tokenizer, ds))  # fmt: skip
    cls = [{"text": t, "label": i % 3} for i, t in enumerate(texts)]
    _same(tokenize_to_arrow("classification", cls, tokenizer, ds, tmp_path / "c", num_proc=None),
          tokenize("classification", cls, tokenizer, ds))  # fmt: skip


def test_ids_are_int32_memory_mapped_and_workers_agree(tokenizer: Any, tmp_path: Path) -> None:
    records = _sft_records(400, seed=1)
    ds = spec(template="plain", max_seq_length=160)
    one = tokenize_to_arrow("sft", records, tokenizer, ds, tmp_path / "one", num_proc=None)
    two = tokenize_to_arrow("sft", records, tokenizer, ds, tmp_path / "two", num_proc=2)
    assert str(one.ds.features["input_ids"].feature.dtype) == "int32"
    assert str(one.ds.features["labels"].feature.dtype) == "int32"
    assert one.ds.data.__class__.__name__ == "MemoryMappedTable"  # read from disk, not RAM
    assert len(list((tmp_path / "two").glob("tokens_*.arrow"))) == 2  # one shard a worker
    assert not list((tmp_path / "one").glob("records.arrow"))  # the record rows are gone
    _same(two, tokenize("sft", records, tokenizer, ds))
    assert one.rows([3, 1]) == {"input_ids": [one[3]["input_ids"], one[1]["input_ids"]],
                                "labels": [one[3]["labels"], one[1]["labels"]]}  # fmt: skip


def test_stored_plan_rows_equal_the_in_memory_packing(tokenizer: Any, tmp_path: Path) -> None:
    from kubetune_trainer.data.collate import pack_position_ids, pack_wrapped
    from kubetune_trainer.data.packed import PackedRows, WrappedRows, save_plan

    records = _sft_records(200, seed=2)
    ds = spec(template="plain", max_seq_length=160)
    arrow = tokenize_to_arrow("sft", records, tokenizer, ds, tmp_path, num_proc=None)
    want = tokenize("sft", records, tokenizer, ds)
    save_plan(tmp_path, arrow.length_array, 256)
    packed = PackedRows(arrow, tmp_path, 256)
    assert [packed[r] for r in range(len(packed))] == pack_position_ids(want, 256)
    wrapped = WrappedRows(arrow, 100)
    assert [wrapped[r] for r in range(len(wrapped))] == pack_wrapped(want, 100)


def test_tokenization_reports_rows_per_second_and_eta(
    tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import logging

    from kubetune_trainer.data import progress

    monkeypatch.setattr(progress, "EVERY", 0.0)  # a line every batch (pods: every 10 s)
    with caplog.at_level(logging.INFO, logger="kubetune_trainer.data"):
        tokenize_to_arrow("sft", _sft_records(600), tokenizer, spec(), tmp_path, num_proc=None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tokenize:")]
    assert any("/600 rows (" in x and "rows/s, ETA " in x for x in lines), lines
    rate = progress.RateLog("prepare", every=3600)
    rate.add(5)
    assert rate.line().startswith("prepare: 5 rows, ") and "ETA" not in rate.line()  # no total


@pytest.mark.parametrize("kind", ["sft", "text", "classification"])
def test_an_empty_split_is_an_empty_store_with_the_token_columns(
    kind: str, tokenizer: Any, tmp_path: Path
) -> None:
    """No validation rows (one split group): `map` writes nothing, the split still opens."""
    got = tokenize_to_arrow(kind, [], tokenizer, spec(), tmp_path / kind, num_proc=None)
    assert len(got) == 0 and got.lengths == [] and got.total_tokens == 0
    assert sorted(p.name for p in (tmp_path / kind).iterdir()) == ["meta.json", "tokens.arrow"]


def test_workers_tokenize_on_one_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forked workers would each start the Rust tokenizer's thread pool (2 workers, 2 cores:
    # 6 threads); in process the pool stays; a value the user set is theirs.
    from kubetune_trainer.data.arrow_tokens import _serial_tokenizer

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    with _serial_tokenizer(2):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    with _serial_tokenizer(None):
        assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    with _serial_tokenizer(2):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
