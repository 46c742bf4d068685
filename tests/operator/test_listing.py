"""Accepted specs after an operator start (listing.py): one paginated LIST of a namespace's
spec ConfigMaps answers every job's first look, through the real client against the API
emulator (which chunks lists with limit/continue as the API server does)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kubetune_api import constants as c
from kubetune_operator import builders as b
from kubetune_operator import listing
from kubetune_operator.k8s import KubeClient, login
from kubetune_operator.metrics import OperatorMetrics
from tests.support.kube.operator import NS

CONFIGMAPS = "v1/configmaps"


def _spec_configmap(job: str, uid: str, spec: Any, name: str | None = None) -> dict[str, Any]:
    owner = b.Owner(name=job, namespace=NS, uid=uid)
    return {
        "metadata": {
            "name": name or b.configmap_name(job),
            "namespace": NS,
            "labels": b.labels(owner, component="spec"),
            "ownerReferences": [b.owner_reference(owner)],
            "annotations": {b.ACCEPTED_SPEC: spec if isinstance(spec, str) else json.dumps(spec)},
        },
        "data": {},
    }


def _listed(cluster, asks: list[tuple[str, str]], monkeypatch) -> tuple[list[Any], list[Any]]:
    """What Listings answers for each (job, uid), and the LIST requests it made."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    since = len(cluster.requests())

    async def main() -> list[Any]:
        client = KubeClient(login(), OperatorMetrics())
        try:
            found = listing.Listings()
            return [await found.accepted(client, NS, job, uid) for job, uid in asks]
        finally:
            await client.close()

    answers = asyncio.run(main())
    lists = [
        dict(r.url.query)
        for r in cluster.requests()[since:]
        if r.url.path == f"/api/v1/namespaces/{NS}/configmaps"
    ]
    return answers, lists


def test_one_paginated_listing_answers_every_job_of_the_namespace(cluster, monkeypatch) -> None:
    monkeypatch.setattr(listing, "PAGE", 3)
    for i in range(7):
        cluster.create(CONFIGMAPS, _spec_configmap(f"job-{i}", f"uid-{i}", {"n": i}))
    # Not read: named unlike a spec ConfigMap of its job, and a hand-broken annotation.
    cluster.create(CONFIGMAPS, _spec_configmap("job-7", "uid-7", {"n": 7}, name="other"))
    cluster.create(CONFIGMAPS, _spec_configmap("job-8", "uid-8", "{not json"))
    asks = [(f"job-{i}", f"uid-{i}") for i in range(9)] + [("job-0", "uid-0")]
    answers, lists = _listed(cluster, [("job-1", "a-new-uid"), *asks], monkeypatch)
    # One listing, in chunks of 3 (9 ConfigMaps: 3 requests, the last without a token).
    assert [q.get("limit") for q in lists] == ["3", "3", "3"]
    assert ["continue" in q for q in lists] == [False, True, True]
    assert all(q["labelSelector"] == f"{c.LABEL_COMPONENT}=spec,{c.LABEL_MANAGED_BY}="
               f"{b.MANAGED_BY}" for q in lists)  # fmt: skip
    # A reused name (another uid) is not answered, and its entry is spent: job-1 GETs.
    assert answers[0] is None and answers[2] is None
    assert answers[1] == {"n": 0} and answers[3:8] == [{"n": i} for i in range(2, 7)]
    assert answers[8:10] == [None, None]  # misnamed, broken: the caller GETs (and sees)
    assert answers[10] is None  # an entry answers once; then memo.accepted has it


def test_a_listing_expires_and_is_never_made_twice(cluster, monkeypatch) -> None:
    cluster.create(CONFIGMAPS, _spec_configmap("job-0", "uid-0", {"n": 0}))
    cluster.create(CONFIGMAPS, _spec_configmap("job-1", "uid-1", {"n": 1}))
    monkeypatch.setattr(listing, "LISTING_SECONDS", -1.0)  # expired as soon as made
    answers, lists = _listed(cluster, [("job-0", "uid-0"), ("job-1", "uid-1")], monkeypatch)
    assert answers == [None, None] and len(lists) == 1


@pytest.mark.parametrize("jobs", [0, 1])
def test_a_namespace_without_spec_configmaps_lists_once(cluster, monkeypatch, jobs) -> None:
    asks = [("job-0", "uid-0"), ("job-1", "uid-1")]
    if jobs:
        cluster.create(CONFIGMAPS, _spec_configmap("job-0", "uid-0", {"n": 0}))
    answers, lists = _listed(cluster, asks, monkeypatch)
    assert answers == ([{"n": 0}, None] if jobs else [None, None]) and len(lists) == 1
