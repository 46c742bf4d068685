"""The pods of bench/operator_lifecycle.py: every pod's /metrics (rank 0) from one asyncio
server, and a simulated Job controller and kubelet playing pods through the API."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import say

NS = "bench"
STEP_SECONDS = 2.0
TOTAL_STEPS = 100_000


def pod_ip(i: int) -> str:
    n = i + 1
    return f"127.77.{n // 250}.{n % 250 + 1}"


def _raw(obj: Any) -> dict[str, Any]:
    return obj.raw if hasattr(obj, "raw") else dict(obj)


def objects(emu: Any, plural: str) -> list[dict[str, Any]]:
    for _ in range(50):  # the emulator's loop may resize the dict while we read it
        try:
            return [
                obj
                for (res, ns, _n), obj in list(emu.objects.items())
                if res.plural == plural and ns == NS and not obj.deleted
            ]
        except RuntimeError:
            time.sleep(0.01)
    return []


class Rank0:
    """Every pod's /metrics on its own loopback IP, from one asyncio server in a thread."""

    def __init__(self, ips: list[str], port: int) -> None:
        from kubetune_operator.progress import _NAMES

        self.names = {v: k for k, v in _NAMES.items()}  # follows a rename of the gauges
        self.ips, self.port = ips, port
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.scrapes = 0
        self.scraped_at: dict[str, float] = {}  # pod IP -> monotonic time of its last scrape
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _text(self, ip: str) -> str:
        t0 = self.started.get(ip)
        step = 0 if t0 is None else int((time.monotonic() - t0) / STEP_SECONDS)
        step = TOTAL_STEPS if ip in self.finished else min(step, TOTAL_STEPS)
        n = self.names
        return (
            f"{n['step']} {step}\n{n['total_steps']} {TOTAL_STEPS}\n"
            f"{n['epoch']} {step / TOTAL_STEPS}\n{n['loss']} {2.0 - step * 1e-5}\n"
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            ip = writer.get_extra_info("sockname")[0]
            body = self._text(ip).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
            writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            self.scrapes += 1
            self.scraped_at[ip] = time.monotonic()
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, host=self.ips, port=self.port, backlog=64)
        )
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> Rank0:
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Kubelet:
    """Plays the Job controller and the kubelet: Job -> pod Pending -> Running (1 s later)."""

    def __init__(self, cluster: Any, play: Any, rank0: Rank0) -> None:
        self.cluster, self.play, self.rank0 = cluster, play, rank0
        self.pods: dict[str, dict[str, Any]] = {}  # job name -> its pod
        self.created: dict[str, float] = {}
        self.running: set[str] = set()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(4)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _create(self, job: str) -> None:
        (pod,) = self.play.create_pods(self.cluster, NS, job)
        self.pods[job] = pod
        self.created[job] = time.monotonic()

    def _run(self, job: str) -> None:
        ip = pod_ip(int(job.split("-")[1]))
        self.play.set_running(self.cluster, NS, self.pods[job], ip)
        self.rank0.started[ip] = time.monotonic()

    def _loop(self) -> None:
        seen: set[str] = set()
        while not self.stop.is_set():
            names = [_raw(o)["metadata"]["name"] for o in objects(self.cluster.emu, "jobs")]
            new = [n for n in names if n not in seen]
            futures = {self.pool.submit(self._create, n): ("create", n) for n in new}
            seen.update(new)
            now = time.monotonic()
            due = [
                j for j, t in list(self.created.items()) if j not in self.running and now - t > 1
            ]
            self.running.update(due)
            futures |= {self.pool.submit(self._run, j): ("run", j) for j in due}
            for f, (what, job) in futures.items():
                try:
                    f.result()
                except Exception as exc:  # the emulator too slow: try again
                    say(f"kubelet: {what} {job}: {exc!r}; again")
                    (seen if what == "create" else self.running).discard(job)
            time.sleep(0.5)

    def finish(self, jobs: list[str]) -> None:
        def one(job: str) -> None:
            self.rank0.finished.add(pod_ip(int(job.split("-")[1])))
            self.play.set_terminated(self.cluster, NS, self.pods[job], 0, {"message": "done"})
            cond = [{"type": "Complete", "status": "True"}]
            self.play.set_job_status(self.cluster, NS, job, conditions=cond)

        list(self.pool.map(one, jobs))
