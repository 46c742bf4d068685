"""Run the app with uvicorn: in the foreground (`kubetune serve`) or in a thread.

A thread-run server stops cleanly: `should_exit` lets uvicorn finish in-flight requests,
close its socket and return from `serve()`, then the thread is joined.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn


class ServerThread:
    """`with ServerThread(app, port) as url:` — serving on http://127.0.0.1:port until exit."""

    def __init__(self, app: Any, port: int, host: str = "127.0.0.1", timeout: float = 30) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"
        self.timeout = timeout
        self.thread = threading.Thread(target=self.server.run, name="kubetune-serve", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        # uvicorn sets `started` once the socket listens; poll rather than sleep blindly.
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)


def serve_forever(app: Any, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="info")
