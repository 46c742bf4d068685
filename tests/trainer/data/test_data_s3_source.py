"""A dataset on S3 (a real moto server): fetched through kubetune_trainer.storage, then read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import prepare
from kubetune_trainer.errors import BadDataError
from tests.support.trainer.data import REPO, S3_BUCKET, dataset_job

pytestmark = pytest.mark.services


def test_s3_source_matches_local(s3_server: Any, tmp_path: Path) -> None:
    local = REPO / "examples" / "data" / "medical_qa" / "train.jsonl"
    s3 = s3_server.client()
    s3.upload_file(str(local), S3_BUCKET, "data/medical/train.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "answer": "a"}\n{"question": "x"}\n')
    s3.upload_file(str(bad), S3_BUCKET, "data/bad.jsonl")
    uri = f"s3://{S3_BUCKET}/data/medical/train.jsonl"
    remote = prepare(dataset_job(uri), cache_dir=str(tmp_path / "cache"))
    here = prepare(dataset_job(local))
    assert [r["prompt"] for r in remote.train] == [r["prompt"] for r in here.train]
    assert remote.train[0]["meta"]["source"].startswith(uri + ":")  # not the cache path
    assert remote.stats.read == 60
    # Same file name under another prefix as validation: no clash in the fetch cache.
    val = tmp_path / "train.jsonl"
    val.write_text('{"question": "Held out?", "answer": "Yes."}\n')
    s3.upload_file(str(val), S3_BUCKET, "data/val/train.jsonl")
    both = prepare(
        dataset_job(uri, validation={"source": f"s3://{S3_BUCKET}/data/val/train.jsonl"})
    )
    assert len(both.train) == 60 and [r["prompt"] for r in both.validation] == ["Held out?"]
    with pytest.raises(BadDataError, match=rf"s3://{S3_BUCKET}/data/bad.jsonl:2: missing field"):
        prepare(dataset_job(f"s3://{S3_BUCKET}/data/bad.jsonl"), cache_dir=str(tmp_path / "c2"))
