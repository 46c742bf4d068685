"""The FastAPI app: POST /v1/completions, GET /healthz.

Errors are plain JSON `{"error": "...", "details": [...]}`: 422 for a missing/invalid
field or a field the format does not take, 413 for a prompt over the token limit.
Generation runs one request at a time (one model in memory; torch uses every core
already), in FastAPI's thread pool so /healthz stays responsive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kubetune_api.spec_training import GenerationOptions
from kubetune_trainer.evaluation.generation import generate, generation_params
from kubetune_trainer.evaluation.models import LoadedModel

from .schemas import CompletionRequest, CompletionResponse


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ServeConfig:
    format: str = "auto"  # the dataset format whose prompt layout requests use
    template: str = "auto"  # dataset.template
    system_prompt: str | None = None
    max_prompt_tokens: int = 2048
    max_new_tokens_limit: int = 512
    defaults: GenerationOptions = field(default_factory=GenerationOptions)


def user_message(req: CompletionRequest, fmt: str) -> str:
    """The user turn in the layout the format was trained on (see data/formats)."""
    from kubetune_trainer.data.formats.finance import finance_prompt
    from kubetune_trainer.data.formats.qa import qa_prompt

    if fmt == "finance_qa":
        _only(req, allowed={"question", "tickers", "context"}, fmt=fmt)
        if not req.question or not req.tickers:
            raise ApiError(422, "finance_qa requests need `question` and `tickers`")
        return finance_prompt(req.question, req.tickers, req.context or "")
    if fmt == "qa":
        _only(req, allowed={"question", "context"}, fmt=fmt)
        if not req.question:
            raise ApiError(422, "qa requests need `question`")
        return qa_prompt(req.question, req.context)
    _only(req, allowed={"prompt"}, fmt=fmt)
    if not req.prompt:
        raise ApiError(422, f"requests to a {fmt!r} model need `prompt`")
    return req.prompt


def _only(req: CompletionRequest, allowed: set[str], fmt: str) -> None:
    given = {k for k in ("prompt", "question", "tickers", "context") if getattr(req, k) is not None}
    extra = sorted(given - allowed)
    if extra:
        raise ApiError(
            422,
            f"field(s) {', '.join(extra)} do not apply to a {fmt!r} model; "
            f"send {', '.join(sorted(allowed))}",
        )


def create_app(lm: LoadedModel, cfg: ServeConfig) -> FastAPI:
    from kubetune_trainer.data.templates import render_prompt

    app = FastAPI(title="kubetune", version="1")
    lock = threading.Lock()

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
            details.append(f"{loc}: {e['msg']}")
        return JSONResponse({"error": "invalid request", "details": details}, status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": lm.label, "format": cfg.format}

    @app.post("/v1/completions", response_model=CompletionResponse)
    def complete(req: CompletionRequest) -> CompletionResponse:
        d = cfg.defaults
        gen = GenerationOptions(
            max_new_tokens=req.max_new_tokens or d.max_new_tokens,
            temperature=d.temperature if req.temperature is None else req.temperature,
            top_p=req.top_p or d.top_p,
            seed=d.seed if req.seed is None else req.seed,
        )
        if gen.max_new_tokens > cfg.max_new_tokens_limit:
            raise ApiError(
                422, f"max_new_tokens {gen.max_new_tokens} is over this server's limit "
                f"{cfg.max_new_tokens_limit}",
            )  # fmt: skip
        prompt = render_prompt(
            user_message(req, cfg.format), lm.tokenizer, cfg.template, cfg.system_prompt
        )
        n_prompt = len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if n_prompt > cfg.max_prompt_tokens:
            raise ApiError(
                413, f"prompt is {n_prompt} tokens; this server accepts at most "
                f"{cfg.max_prompt_tokens}",
            )  # fmt: skip
        with lock:
            output = generate(lm, [prompt], gen)[0]
        parsed = None
        if cfg.format == "finance_qa":
            from kubetune_trainer.data.formats.finance import parse_finance_answer

            parsed = parse_finance_answer(output)
        return CompletionResponse(
            output=output,
            prompt=prompt,
            prompt_tokens=n_prompt,
            completion_tokens=len(lm.tokenizer(output, add_special_tokens=False)["input_ids"]),
            generation=generation_params(gen),
            model=lm.label,
            parsed=parsed,
        )

    return app
