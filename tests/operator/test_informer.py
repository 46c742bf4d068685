"""informer.py: our own list+watch of the operator's Jobs and pods (what kopf's indexes
were), through the real client against the API emulator: a paged LIST, then a watch that
keeps the store current and pokes the job whose child changed; 410 Gone lists again; a
cluster-wide watch filtered by namespace patterns; a watch line past the limit refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp.web
import kopf
import pytest

from kubetune_api import constants as c
from kubetune_operator import informer as inf
from kubetune_operator.builders import MANAGED_BY
from kubetune_operator.cache import trim_pod
from kubetune_operator.handlers.setup import CHILD_LABELS
from kubetune_operator.k8s import PODS, ApiError, KubeClient, login, selector_text
from kubetune_operator.metrics import OperatorMetrics
from tests.support.kube.job_play import set_running
from tests.support.kube.operator import NS
from tests.support.net import free_port

PODS_PATH = "v1/pods"


def _pod(name: str, job: str = "ft", ns: str = NS, ours: bool = True) -> dict[str, Any]:
    labels = {c.LABEL_JOB: job, c.LABEL_ATTEMPT: "1"}
    if ours:
        labels[c.LABEL_MANAGED_BY] = MANAGED_BY
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "t", "image": "x", "env": [{"name": "A", "value": "b"}]}]},
    }


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _run(cluster, monkeypatch, scenario: Callable[..., Awaitable[Any]], **kw: Any) -> Any:
    """`scenario(informer, pokes)` with an informer of pods running in this loop."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

    async def main() -> Any:
        client = KubeClient(login(), OperatorMetrics())
        pokes: list[tuple[str, str, str]] = []
        informer = inf.Informer(
            client, PODS, kw.get("ns", NS), inf.Store(trim_pod), CHILD_LABELS, pokes.append,
            kw.get("keep"),
        )  # fmt: skip
        task = asyncio.create_task(informer.run())
        try:
            await asyncio.wait_for(informer.listed.wait(), 10)
            return await scenario(informer, pokes)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()

    return asyncio.run(main())


def _names(informer: inf.Informer) -> set[str]:
    store = informer.store
    return {p["metadata"]["name"] for objs in store._by_key.values() for p in objs.values()}


def test_a_paged_listing_then_the_watch_keep_the_store_and_poke_the_job(cluster, monkeypatch):
    monkeypatch.setattr(inf, "LIST_PAGE", 2)
    for i in range(5):
        cluster.create(PODS_PATH, _pod(f"ft-{i}"), NS)
    cluster.create(PODS_PATH, _pod("someone-else", ours=False), NS)
    since = len(cluster.requests())

    async def scenario(informer: inf.Informer, pokes: list[Any]) -> None:
        assert _names(informer) == {f"ft-{i}" for i in range(5)}
        (one,) = [
            p for p in informer.store.get((NS, "ft", "1")) or () if p["metadata"]["name"] == "ft-0"
        ]
        assert "spec" not in one  # trimmed as it arrived
        assert pokes == []  # the first listing pokes nothing: every job is due at start
        # Blocking calls to the emulator (its own thread) while this loop waits.
        cluster.create(PODS_PATH, _pod("ft-5", job="other"), NS)
        set_running(cluster, NS, {"metadata": {"name": "ft-1"}}, "10.0.0.9")
        cluster.delete(PODS_PATH, NS, "ft-2")
        await until(lambda: "ft-2" not in _names(informer) and "ft-5" in _names(informer), "events")
        await until(lambda: len(pokes) >= 3, "pokes")
        running = [
            p for p in informer.store.get((NS, "ft", "1")) or () if p["metadata"]["name"] == "ft-1"
        ]
        assert running[0]["status"]["phase"] == "Running"
        assert sorted(set(pokes)) == [(NS, "ft", "1"), (NS, "other", "1")]

    _run(cluster, monkeypatch, scenario)
    path = f"/api/v1/namespaces/{NS}/pods"
    gets = [r for r in cluster.requests()[since:] if r.method.value == "GET"]
    lists = [dict(r.url.query) for r in gets if r.url.path == path and "watch" not in r.url.query]
    assert [q.get("limit") for q in lists] == ["2", "2", "2"]
    assert all(q["labelSelector"] == selector_text(CHILD_LABELS) for q in lists)


def test_a_watch_too_old_lists_again_and_pokes_what_changed_meanwhile(cluster, monkeypatch):
    for name in ("ft-a", "ft-b"):
        cluster.create(PODS_PATH, _pod(name), NS)

    async def scenario(informer: inf.Informer, pokes: list[Any]) -> tuple[set[str], list[Any]]:
        await asyncio.sleep(0.3)  # its watch is open
        # While this loop is blocked the informer cannot reconnect: its stream ends before
        # the changes below reach it, and the emulator forgets them (a compacted etcd).
        cluster.emu.close_watches()
        cluster.delete(PODS_PATH, NS, "ft-a")
        cluster.create(PODS_PATH, _pod("ft-c", job="third"), NS)
        del cluster.emu.log[:]
        cluster.create(PODS_PATH, _pod("ft-d", job="fourth"), NS)
        await until(lambda: _names(informer) == {"ft-b", "ft-c", "ft-d"}, "the new listing")
        return _names(informer), sorted(set(pokes))

    _, pokes = _run(cluster, monkeypatch, scenario)
    assert pokes == [(NS, "fourth", "1"), (NS, "ft", "1"), (NS, "third", "1")]


def test_a_cluster_wide_watch_keeps_only_the_namespaces_served(cluster, monkeypatch):
    cluster.create_namespace("team-b")
    cluster.create_namespace("other")
    for ns in (NS, "team-b", "other"):
        cluster.create(PODS_PATH, _pod("ft-0", ns=ns), ns)

    async def scenario(informer: inf.Informer, pokes: list[Any]) -> list[str]:
        cluster.create(PODS_PATH, _pod("ft-1", ns="other"), "other")
        cluster.create(PODS_PATH, _pod("ft-1", ns="team-b"), "team-b")
        await until(lambda: len(informer.store) == 3, "team-b's new pod")
        await asyncio.sleep(0.3)  # other's would be here by now
        pods = [p for objs in informer.store._by_key.values() for p in objs.values()]
        return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods)

    kept = _run(cluster, monkeypatch, scenario, ns=None, keep=lambda ns: ns.startswith("team-"))
    assert kept == [f"{NS}/ft-0", "team-b/ft-0", "team-b/ft-1"]


def test_informers_of_two_namespaces_share_one_store_and_keep_each_others_objects(
    cluster, monkeypatch
):
    """`--namespace team-a --namespace team-b`: one informer per namespace, one store per
    kind. A namespace's listing (the first, or one after a 410) replaces only its own."""
    cluster.create_namespace("team-b")
    for ns in (NS, "team-b"):
        cluster.create(PODS_PATH, _pod("ft-0", ns=ns), ns)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

    async def main() -> list[list[str]]:
        client = KubeClient(login(), OperatorMetrics())
        store = inf.Store(trim_pod)
        informers = [
            inf.Informer(client, PODS, ns, store, CHILD_LABELS, lambda key: None)
            for ns in (NS, "team-b")
        ]
        tasks = [asyncio.create_task(i.run()) for i in informers]
        try:
            for i in informers:
                await asyncio.wait_for(i.listed.wait(), 10)
            seen = [sorted(k[0] for k in store._by_key)]
            await informers[0]._list()  # team-a lists again (as after a 410)
            seen.append(sorted(k[0] for k in store._by_key))
            return seen
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    assert asyncio.run(main()) == [[NS, "team-b"], [NS, "team-b"]]


@contextlib.asynccontextmanager
async def _hostile(handler: Any) -> AsyncIterator[KubeClient]:
    """Our client against a server on 127.0.0.1 whose /api/v1/pods is `handler`."""
    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/pods", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    client = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), OperatorMetrics())
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


def test_a_watch_line_past_the_limit_is_refused(monkeypatch):
    """A stream that never ends its line (a broken proxy, a hostile server) is not
    buffered without end: the watch fails, and the informer would back off and retry."""
    monkeypatch.setattr("kubetune_operator.k8s.MAX_EVENT_BYTES", 4096)

    async def endless(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        resp = aiohttp.web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type": "ADDED", "object": {"metadata": {"name": "' + b"x" * 8192)
        await asyncio.sleep(5)
        return resp

    async def main() -> str:
        async with _hostile(endless) as client:
            with pytest.raises(ApiError) as caught:
                async for _ in client.watch(PODS, None, {}, 10):
                    pass
            return str(caught.value)

    assert "over 4096 bytes" in asyncio.run(main())


def test_a_malformed_watch_event_is_logged_and_the_informer_lists_again(caplog):
    """Whatever a server sends, the informer does not die (its store would go stale while
    the scheduler trusts it): it logs, backs off and lists afresh."""
    seen: list[str] = []

    async def pods(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        seen.append("watch" if request.query.get("watch") else "list")
        if not request.query.get("watch"):
            return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": []})
        resp = aiohttp.web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'[1, 2]\n{"type": "ADDED", "object": {"metadata": "nonsense"}}\n')
        await asyncio.sleep(5)
        return resp

    async def main() -> bool:
        async with _hostile(pods) as client:
            informer = inf.Informer(client, PODS, None, inf.Store(trim_pod), CHILD_LABELS, print)
            task = asyncio.create_task(informer.run())
            try:
                await until(lambda: seen.count("list") >= 2, "a second listing", timeout=15)
                return not task.done()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    assert asyncio.run(main())
    assert seen[:3] == ["list", "watch", "list"]  # a malformed event: list afresh
    assert "not a watch event: [1, 2]" in caplog.text
