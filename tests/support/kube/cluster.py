"""Reusable harness: the emulator on a 127.0.0.1 port with a kubeconfig, a sync client to
read/write objects and pod status through it, and the real operator running against it.

    with EmulatorServer(tmp_path) as cluster:          # (a) server + kubeconfig file
        cluster.apply_crd()                             # the real CRD, as kubectl would
        with run_operator(cluster, namespaces=["ns"]):  # (b) kopf in a thread, over HTTP
            cluster.create("kubetune.io/v1alpha1/finetunejobs", ftj)       # (c) read/write
            cluster.patch("v1/pods", "ns", "p", {"status": {...}}, status=True)

Everything goes over HTTP, so watch events, resourceVersions and the request log
(`cluster.requests()`) are the same whoever writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kmock
import kopf
import yaml

from kubetune_operator.config import OperatorConfig
from kubetune_operator.handlers.setup import SharedMemo
from kubetune_operator.leader import LeaseConfig, run_with_lease
from tests.support.kube.emulator import Emulator
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "crds" / "finetunejobs.kubetune.io.yaml"
FTJ = "kubetune.io/v1alpha1/finetunejobs"
T = TypeVar("T")


def api_path(res: str, ns: str | None = None, name: str | None = None, sub: str = "") -> str:
    """'batch/v1/jobs' | 'v1/pods' (+ namespace, name, subresource) -> URL path."""
    parts = res.strip("/").split("/")
    base = f"/api/{parts[0]}" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}"
    if ns:
        base += f"/namespaces/{ns}"
    base += f"/{parts[-1]}"
    if name:
        base += f"/{name}"
    return base + (f"/{sub}" if sub else "")


class EmulatorServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.emu: Emulator | None = None
        self.url = ""
        self.kubeconfig = workdir / "kubeconfig"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self.http: httpx.Client | None = None
        self.token = ""
        self.op_memo: Any = None  # the memo of the operator run_operator started last

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Emulator() as emu, kmock.Server(emu, port=self.port) as server:
            self.emu, self.url = emu, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            emu.close_watches()
            await asyncio.sleep(0.1)  # let the streams write their end

    def __enter__(self) -> EmulatorServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulator did not start")
        self.token = "emulator-token"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.write_kubeconfig(self.token)
        return self

    def write_kubeconfig(self, token: str) -> None:
        """(Re)write the kubeconfig; a new token rotates credentials (see `emu.tokens`)."""
        self.token = token
        if self.http is not None:
            self.http.headers["Authorization"] = f"Bearer {token}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": "default"},
                }
            ],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.http.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    # --- client ---------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        assert self.http is not None
        return self.http.request(method, path, json=body, **kw)

    def _ok(self, resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code >= 400:
            raise AssertionError(f"{resp.request.method} {resp.request.url}: {resp.text}")
        return resp.json()

    def create(self, res: str, obj: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
        ns = ns or (obj.get("metadata") or {}).get("namespace")
        return self._ok(self.call("POST", api_path(res, ns), obj))

    def get(self, res: str, ns: str | None, name: str) -> dict[str, Any] | None:
        resp = self.call("GET", api_path(res, ns, name))
        return None if resp.status_code == 404 else self._ok(resp)

    def list(self, res: str, ns: str | None = None, labels: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": labels} if labels else None
        return self._ok(self.call("GET", api_path(res, ns), params=params))["items"]

    def patch(
        self, res: str, ns: str | None, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"}
        path = api_path(res, ns, name, "status" if status else "")
        return self._ok(self.http.patch(path, content=_json(patch), headers=headers))  # type: ignore[union-attr]

    def delete(self, res: str, ns: str | None, name: str) -> dict[str, Any] | None:
        resp = self.call("DELETE", api_path(res, ns, name))
        return None if resp.status_code == 404 else self._ok(resp)

    def create_namespace(self, name: str) -> dict[str, Any]:
        """kopf serves only namespaces that exist (it watches them for its patterns)."""
        return self.create("v1/namespaces", {"metadata": {"name": name}})

    def apply_crd(self, path: Path = CRD_FILE) -> dict[str, Any]:
        crd = yaml.safe_load(path.read_text())
        return self.create("apiextensions.k8s.io/v1/customresourcedefinitions", crd)

    def requests(self) -> list[kmock.Request]:
        """Every request the emulator served, in order (KMock's request log)."""
        assert self.emu is not None
        return list(self.emu._requests)

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.list("v1/events", ns)
            if (e.get("involvedObject") or {}).get("name") == name
        ]


def _json(obj: Any) -> bytes:
    import json

    return json.dumps(obj).encode()


@contextlib.contextmanager
def run_operator(
    cluster: EmulatorServer,
    namespaces: list[str] | None = None,
    config: OperatorConfig | None = None,
    lease: LeaseConfig | None = None,
    memo: kopf.Memo | None = None,
) -> Iterator[threading.Thread]:
    """The real operator (kopf + our handlers) in a thread with its own loop, logged in
    through the cluster's kubeconfig; stopped cleanly (stop flag) at exit. With `lease`,
    it runs as `python -m kubetune_operator` does without --standalone: kopf starts once
    this replica holds the Lease. A `memo` passed in is the operator's own (a test reads
    memo.metrics from it)."""
    import kubetune_operator.main  # noqa: F401  (registers the handlers)

    config = config or OperatorConfig(
        reconcile_interval=0.5, status_interval=0.5, metrics_port=None
    )
    if namespaces is not None:  # the served namespaces are the config's, as in __main__
        config = dataclasses.replace(config, namespaces=tuple(namespaces))
    memo = memo if memo is not None else SharedMemo()  # as __main__ makes it
    memo.config = config
    cluster.op_memo = memo  # the latest operator's: tests read what it counted
    stop = threading.Event()
    ready = threading.Event()
    errors: list[BaseException] = []
    old_kubeconfig = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)  # kopf/our login read it at start

    scope = config.kopf_scope()

    async def elected(lease: LeaseConfig) -> None:
        stopping = asyncio.Event()

        async def relay() -> None:  # the test's threading flag -> the loop's event
            while not stop.is_set():
                await asyncio.sleep(0.05)
            stopping.set()

        relaying = asyncio.create_task(relay())
        await run_with_lease(lease, stopping, memo, **scope)
        relaying.cancel()

    def target() -> None:
        try:
            if lease is not None:
                ready.set()  # a standby is "started" too: it waits for the Lease
                asyncio.run(elected(lease))
                return
            asyncio.run(
                kopf.operator(
                    standalone=True,
                    stop_flag=stop,
                    ready_flag=ready,
                    memo=memo,
                    **scope,
                )
            )
        except BaseException as exc:  # surfaced to the test at exit
            errors.append(exc)

    thread = threading.Thread(target=target, name="kubetune-operator", daemon=True)
    thread.start()
    wait_for(lambda: ready.is_set() or errors, 20, "the operator to start")
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)
        if old_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old_kubeconfig
        if thread.is_alive():
            raise RuntimeError("the operator did not stop")
        if errors:
            raise errors[0]


def main() -> None:
    """Run the emulator alone (with the CRD) for kubectl or the operator by hand:

    .venv/bin/python -m tests.support.kube.cluster /tmp/emu  # then KUBECONFIG=/tmp/emu/kubeconfig
    """
    import argparse
    import signal

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("workdir", type=Path)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--namespace", action="append", default=["default"])
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatorServer(args.workdir, args.port) as cluster:
        cluster.apply_crd()
        for ns in args.namespace:
            cluster.create_namespace(ns)
        print(f"serving {cluster.url}; KUBECONFIG={cluster.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
