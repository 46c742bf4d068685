"""The tokenized-data cache: built once, reused by a second run, a new pod (fetched from the
store, S3 included) and the other ranks; a torn or damaged entry is rebuilt, never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.spec_data import DatasetSpec
from kubetune_trainer.data import token_cache
from kubetune_trainer.data.token_cache import PREFIX, tokenized_splits
from kubetune_trainer.records import PreparedDataset
from kubetune_trainer.storage import open_store
from kubetune_trainer.storage.manifest import MANIFEST
from tests.support.servers.plugin import S3_BUCKET

DS = DatasetSpec(source="x.jsonl", template="plain", max_seq_length=64)


def _prepared(n: int = 60) -> PreparedDataset:
    rec = [{"prompt": f"What is {i} plus {i}?", "completion": f"It is {2 * i}."} for i in range(n)]
    return PreparedDataset("sft", "qa", rec[: n - 10], rec[n - 10 :], f"sha256:test-{n}")


def _rows(t: Any) -> list[Any]:
    return [t.train_rows[i] for i in range(len(t.train_rows))]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANK", "0")
    return tmp_path / "cache"


def test_second_run_new_pod_and_damage(tokenizer: Any, tmp_path: Path, cache: Path) -> None:
    store = open_store(str(tmp_path / "run"))
    before = token_cache.TOKENIZED["count"]
    first = tokenized_splits(_prepared(), tokenizer, DS, "position_ids", store)
    assert first.built and token_cache.TOKENIZED["count"] == before + 1
    entry = tmp_path / "run" / PREFIX / first.key
    assert (entry / MANIFEST).is_file() and (entry / "train" / "plan.npz").is_file()

    again = tokenized_splits(_prepared(), tokenizer, DS, "position_ids", store)  # a retry
    assert not again.built and token_cache.TOKENIZED["count"] == before + 1
    assert _rows(again) == _rows(first)

    import shutil

    shutil.rmtree(cache)  # a new pod: nothing local, the store has the committed entry
    fetched = tokenized_splits(_prepared(), tokenizer, DS, "position_ids", store)
    assert not fetched.built and token_cache.TOKENIZED["count"] == before + 1
    assert _rows(fetched) == _rows(first)

    # A damaged shard in the store (same size, other bytes) and no local copy: rebuilt.
    shutil.rmtree(cache)
    shard = next((entry / "train").glob("tokens*.arrow"))
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    rebuilt = tokenized_splits(_prepared(), tokenizer, DS, "position_ids", store)
    assert rebuilt.built and token_cache.TOKENIZED["count"] == before + 2
    assert _rows(rebuilt) == _rows(first)

    # A damaged local copy is not used either; an entry without manifest is not committed.
    local = next((cache / "data" / first.key / "train").glob("tokens*.arrow"))
    local.write_bytes(local.read_bytes()[:-1])
    (entry / MANIFEST).unlink()
    assert tokenized_splits(_prepared(), tokenizer, DS, "position_ids", store).built
    assert token_cache.TOKENIZED["count"] == before + 3
    assert (entry / MANIFEST).is_file()  # committed again


def test_key_changes_with_what_changes_tokens(tokenizer: Any, chat_tokenizer: Any) -> None:
    key = token_cache.cache_key
    base = key("sft", "sha256:a", tokenizer, DS, "none")
    assert base == key("sft", "sha256:a", tokenizer, DS, "none")
    others = {
        key("sft", "sha256:b", tokenizer, DS, "none"),
        key("sft", "sha256:a", chat_tokenizer, DS, "none"),
        key("sft", "sha256:a", tokenizer, DS, "position_ids"),
        key("sft", "sha256:a", tokenizer, DS.model_copy(update={"max_seq_length": 65}), "none"),
        key("sft", "sha256:a", tokenizer, DS.model_copy(update={"template": "alpaca"}), "none"),
        key("sft", "sha256:a", tokenizer, DS.model_copy(update={"system_prompt": "x"}), "none"),
        key(
            "sft",
            "sha256:a",
            tokenizer,
            DS.model_copy(update={"completion_only_loss": False}),
            "none",
        ),
    }
    assert base not in others and len(others) == 7


def test_s3_store_round_trip(tokenizer: Any, cache: Path, s3_server: Any) -> None:
    store = open_store(f"s3://{S3_BUCKET}/runs/cache-test", endpoint_url=s3_server.endpoint)
    first = tokenized_splits(_prepared(30), tokenizer, DS, "none", store)
    import shutil

    shutil.rmtree(cache)
    again = tokenized_splits(_prepared(30), tokenizer, DS, "none", store)
    assert first.built and not again.built
    assert [again.train[i] for i in range(len(again.train))] == [
        first.train[i] for i in range(len(first.train))
    ]


RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoTokenizer
    from kubetune_api.spec_data import DatasetSpec
    from kubetune_trainer.data import token_cache
    from kubetune_trainer.records import PreparedDataset
    from kubetune_trainer.storage import open_store

    tok_dir, run_dir = sys.argv[1], sys.argv[2]
    recs = [{"prompt": f"Q {i} " * (i % 7 + 1), "completion": f"A {i}"} for i in range(3000)]
    prep = PreparedDataset("sft", "qa", recs[:2900], recs[2900:], "sha256:two-ranks")
    ds = DatasetSpec(source="x.jsonl", template="plain", max_seq_length=64)
    t = token_cache.tokenized_splits(prep, AutoTokenizer.from_pretrained(tok_dir), ds,
                                     "position_ids", open_store(run_dir), say=print)
    rows = [t.train_rows[i]["input_ids"] for i in range(len(t.train_rows))]
    print("RESULT", json.dumps({"built": t.built, "count": token_cache.TOKENIZED["count"],
                                "rows": len(rows), "first": rows[0]}))
    """
)


@pytest.mark.slow  # two interpreters importing transformers: ~25 s on 2 busy cores
def test_two_ranks_on_two_nodes_prepare_once(tokenizer: Any, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    procs = []
    for rank in (1, 0):  # rank 1 first: it must wait for rank 0's commit, not build
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
               "KUBETUNE_CACHE": str(tmp_path / f"node{rank}")}  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "tok"), str(tmp_path / "run")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    res = [json.loads(o.split("RESULT ", 1)[1]) for o in outs]
    assert [r["built"] for r in res] == [False, True], outs  # rank 1 fetched, rank 0 built
    assert sum(r["count"] for r in res) == 1
    assert "waits for rank 0" in outs[0]
    assert res[0]["rows"] == res[1]["rows"] and res[0]["first"] == res[1]["first"]


def test_other_records_under_the_same_claimed_fingerprint_are_not_reused(
    tokenizer: Any, cache: Path
) -> None:
    a, b = _prepared(40), _prepared(40)
    b.train[0] = {"prompt": "Something else?", "completion": "Yes."}
    assert a.fingerprint == b.fingerprint  # a hand-made PreparedDataset may claim anything
    first = tokenized_splits(a, tokenizer, DS, "none")
    second = tokenized_splits(b, tokenizer, DS, "none")
    assert first.built and second.built and first.key != second.key
    assert second.train[0] != first.train[0]
