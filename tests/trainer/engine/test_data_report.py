"""What a run reports about its data, from a real file: how many examples maxSeqLength cut
(said, in report.json, in the prepared stats) and the dataset fingerprint, the same in the
report, the registry record and `prepare(job)`."""

from __future__ import annotations

import json
import random
from pathlib import Path

from kubetune_trainer.data import prepare
from kubetune_trainer.data.tokenize import tokenize
from kubetune_trainer.engine.main import execute
from kubetune_trainer.engine.setup import load_all
from kubetune_trainer.recipes.sft import SFT_TRUNCATION
from tests.support.builders import COLORS, ITEMS, make_job

MAX_LEN = 48


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    """Every third answer goes on for eight more sentences: ~100 tokens, the rest ~35."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        c, item = rnd.choice(COLORS), rnd.choice(ITEMS)
        answer = f"The {item} is {c}."
        if i % 3 == 0:
            answer += "".join(
                f" The {rnd.choice(ITEMS)} next to it is {rnd.choice(COLORS)}." for _ in range(8)
            )
        out.append({"question": f"What color is the {item}? It is {c}.", "answer": answer})
    return out


def test_truncation_counts_and_the_fingerprint_lineage(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(60, 3)))
    job = make_job(
        tmp_path / "out", name="lineage",
        dataset={"source": str(data), "maxSeqLength": MAX_LEN, "packing": "none",
                 "validation": {"fraction": 0.2}},
        training={"maxSteps": 2},
    )  # fmt: skip
    said: list[str] = []
    loaded = load_all(job, None, said.append)  # the run reads and prepares the file itself
    prep = loaded.prepared
    # Expected: the examples whose full tokenization (no limit) is longer than maxSeqLength.
    unlimited = job.spec.dataset.model_copy(update={"max_seq_length": 10**6})

    def too_long(records: list[dict]) -> int:
        lengths = tokenize("sft", records, loaded.tokenizer, unlimited).lengths
        return sum(n > MAX_LEN for n in lengths)

    n_train, n_val = too_long(prep.train), too_long(prep.validation)
    assert 0 < n_train < len(prep.train) and 0 < n_val < len(prep.validation)

    code, res = execute(job, say=said.append, loaded=loaded)
    assert code == 0 and res is not None
    assert (
        f"truncated: {n_train} of {len(prep.train)} training examples longer than maxSeqLength "
        f"{MAX_LEN} ({n_val} of {len(prep.validation)} validation); {SFT_TRUNCATION}"
    ) in said
    report = json.loads((Path(res.run_uri) / "report" / "report.json").read_text())
    assert report["data"]["truncated"] == {
        "train": n_train, "train_total": len(prep.train),
        "validation": n_val, "validation_total": len(prep.validation),
        "dropped": 0, "max_seq_length": MAX_LEN, "policy": SFT_TRUNCATION,
    }  # fmt: skip
    assert prep.stats.truncated == n_train + n_val  # the prepared stats say so too

    # Lineage: the fingerprint of the data as `prepare` makes it, wherever it is recorded.
    want = prepare(job).fingerprint
    assert want.startswith("sha256:")
    record = json.loads((tmp_path / "out" / "registry" / "lineage" / "v1.json").read_text())
    assert report["data"]["fingerprint"] == record["dataset_fingerprint"] == want
    assert report["results"]["data_fingerprint"] == want
