"""The HTTP API of the local queue (`kubetune serve-api`): the Client's verbs as routes.

    POST /jobs                              {"spec": {FineTuneJob manifest}, "overrides": []}
    GET  /jobs                              every job
    GET  /jobs/{namespace}/{name}           one job
    GET  /jobs/{namespace}/{name}/logs      text; ?follow=true streams until the job ends
    GET  /jobs/{namespace}/{name}/metrics
    POST /jobs/{namespace}/{name}/cancel
    GET  /healthz, /openapi.json, /docs

Bound to 127.0.0.1 by default. A token (Authorization: Bearer ...) is required when one is
configured, and `serve-api` refuses to bind any other address without one. Relative paths
in a submitted spec (dataset.source, output.uri) are read from the server's folder.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from .model import InvalidJobError, JobsError, UnknownJobError


class SubmitBody(BaseModel):
    spec: dict[str, Any] = Field(description="The FineTuneJob manifest (apiVersion, kind, ...).")
    overrides: list[str] = Field(default_factory=list, description="--set KEY=VALUE items.")


class SubmitReply(BaseModel):
    id: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(backend: Any, token: str | None = None) -> FastAPI:
    app = FastAPI(title="kubetune jobs API", version="1")

    def auth(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <token>")

    @app.exception_handler(JobsError)
    async def refused(request: Request, exc: JobsError) -> JSONResponse:
        code = 404 if isinstance(exc, UnknownJobError) else 422 if isinstance(
            exc, InvalidJobError) else 409  # fmt: skip
        return JSONResponse({"detail": str(exc)}, status_code=code)

    guarded = [Depends(auth)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs", dependencies=guarded, status_code=201)
    def submit(body: SubmitBody) -> SubmitReply:
        return SubmitReply(id=backend.submit(body.spec, body.overrides))

    @app.get("/jobs", dependencies=guarded)
    def list_jobs() -> list[dict[str, Any]]:
        return [i.to_dict() for i in backend.list()]

    @app.get("/jobs/{namespace}/{name}", dependencies=guarded)
    def get(namespace: str, name: str) -> dict[str, Any]:
        return backend.get(f"{namespace}/{name}").to_dict()

    @app.get("/jobs/{namespace}/{name}/logs", dependencies=guarded)
    def logs(namespace: str, name: str, follow: bool = False, rank: int = 0) -> StreamingResponse:
        chunks = backend.logs(f"{namespace}/{name}", follow=follow, rank=rank)
        first = next(chunks, "")  # refusals (unknown ID, rank) before the 200 is sent

        def stream() -> Any:
            yield first
            yield from chunks

        return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")

    @app.get("/jobs/{namespace}/{name}/metrics", dependencies=guarded)
    def metrics(namespace: str, name: str) -> dict[str, Any]:
        return backend.metrics(f"{namespace}/{name}")

    @app.post("/jobs/{namespace}/{name}/cancel", dependencies=guarded)
    def cancel(namespace: str, name: str) -> dict[str, Any]:
        return backend.cancel(f"{namespace}/{name}").to_dict()

    return app
