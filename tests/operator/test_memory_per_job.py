"""What the operator keeps per job, kept small (issue 21): the forms it is kept in."""

from __future__ import annotations

import asyncio
import copy

import kopf
from kopf._core.reactor.inventory import ResourceMemories

from kubetune_operator.handlers.reconcile import accepted_spec, remember_accepted
from kubetune_operator.handlers.setup import SharedMemo


def test_the_accepted_spec_is_kept_as_compact_json_and_read_back_equal():
    memo = kopf.Memo(accepted={})
    spec = {"model": {"name": "m", "revision": None}, "training": {"maxSteps": 5, "lr": 2e-4}}
    remember_accepted(memo, "ns", "a", "uid-1", spec)
    uid, kept = memo.accepted[("ns", "a")]
    assert uid == "uid-1" and kept == '{"model":{"name":"m","revision":null},' + (
        '"training":{"maxSteps":5,"lr":0.0002}}'
    )
    # Known: no client call (None would fail); each look gets its own copy to read.
    first = asyncio.run(accepted_spec(memo, None, "ns", "a", "uid-1"))  # type: ignore[arg-type]
    assert first == spec and first is not spec
    first["training"]["maxSteps"] = 9
    assert asyncio.run(accepted_spec(memo, None, "ns", "a", "uid-1")) == spec  # type: ignore[arg-type]


def test_kopf_gives_every_object_the_operators_memo_itself():
    memo = SharedMemo(config="c")
    memories = ResourceMemories()  # where kopf keeps what it knows of each object

    async def recall(uid: str) -> object:
        body = {"metadata": {"uid": uid, "name": uid, "namespace": "ns"}}
        return (await memories.recall(body, memobase=memo)).memo

    assert asyncio.run(recall("ftj")) is memo
    assert asyncio.run(recall("pod")) is memo
    assert copy.copy(memo) is memo and memo.config == "c"
