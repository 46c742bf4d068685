"""The inference server over real HTTP: uvicorn on a free 127.0.0.1 port (in a thread,
and `kubetune serve` as a subprocess stopped by its pid), httpx as the client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kubetune_api.spec_training import GenerationOptions
from kubetune_trainer.data.formats.finance import finance_prompt
from kubetune_trainer.data.templates import render_prompt
from kubetune_trainer.evaluation.generation import generate
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.serving.app import ServeConfig, create_app
from kubetune_trainer.serving.server import ServerThread
from tests.support.net import free_port
from tests.support.trainer.tiny_lm import finance_doc


@pytest.fixture(scope="module")
def served(tiny_dirs: dict[str, Path]):  # type: ignore[no-untyped-def]
    lm = load_model(None, str(tiny_dirs["adapter"]))
    cfg = ServeConfig(format="finance_qa", max_prompt_tokens=64, max_new_tokens_limit=32,
                      defaults=GenerationOptions(max_new_tokens=8))  # fmt: skip
    server = ServerThread(create_app(lm, cfg), free_port())
    with server as url, httpx.Client(base_url=url, timeout=60) as client:
        yield lm, client
    assert not server.thread.is_alive()  # shut down cleanly, thread joined


def test_healthz(served) -> None:  # type: ignore[no-untyped-def]
    lm, client = served
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "model": lm.label,
                                                  "format": "finance_qa"}  # fmt: skip


def test_completion_uses_the_finance_layout(served) -> None:  # type: ignore[no-untyped-def]
    lm, client = served
    body = {"question": "What is AAPL trading at?", "tickers": ["AAPL"], "max_new_tokens": 6}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    expected_prompt = render_prompt(
        finance_prompt("What is AAPL trading at?", ["AAPL"]), lm.tokenizer
    )
    assert got["prompt"] == expected_prompt
    # The same text the library produces for that prompt and those settings (greedy).
    assert got["output"] == generate(lm, [expected_prompt], GenerationOptions(max_new_tokens=6))[0]
    assert got["generation"]["max_new_tokens"] == 6 and got["generation"]["decoding"] == "greedy"
    assert 0 < got["completion_tokens"] <= 6
    assert set(got["parsed"]) >= {"answer", "citations", "complete"}
    # Context goes into the prompt.
    r = client.post("/v1/completions", json={**body, "context": "AAPL closed higher"})
    assert "Context: AAPL closed higher" in r.json()["prompt"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"tickers": ["AAPL"]}, 422, "need `question` and `tickers`"),
        ({"question": "q", "tickers": ["aapl"]}, 422, "'aapl' is not a ticker symbol"),
        ({"question": "q", "tickers": ["AAPL"], "temperature": 9}, 422, "temperature"),
        ({"question": "q", "tickers": ["AAPL"], "top_p": 0}, 422, "top_p"),
        ({"question": "q", "tickers": ["AAPL"], "max_new_tokens": 999}, 422, "server's limit 32"),
        ({"question": "q", "tickers": ["AAPL"], "max_tokens": 5}, 422, "max_tokens: Extra inputs"),
        ({"prompt": "hi"}, 422, "do not apply to a 'finance_qa' model"),
        ({"question": "word " * 200, "tickers": ["AAPL"]}, 413, "accepts at most 64"),
    ],
)  # fmt: skip
def test_bad_requests_are_clear_4xx(served, body: dict, status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    r = client.post("/v1/completions", json=body)
    assert r.status_code == status
    assert fragment in json.dumps(r.json())


def test_not_json_is_422(served) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    r = client.post(
        "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid request"


def test_serve_command_subprocess(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(finance_doc(tiny_dirs["data"], str(tiny_dirs["base"]))))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kubetune_trainer.cli", "serve", "--adapter",
           str(tiny_dirs["adapter"]), "--job", str(job), "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        r = httpx.post(f"{url}/v1/completions", timeout=60,
                       json={"question": "How did MSFT do?", "tickers": ["MSFT"]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["generation"]["max_new_tokens"] == 12  # the job's evaluation settings
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        log.close()
    # uvicorn drains and closes, then re-raises the SIGTERM it caught (exit by that signal).
    text = (tmp_path / "serve.log").read_text()
    assert rc in (0, -signal.SIGTERM), text
    assert "Application shutdown complete" in text and "Finished server process" in text


def test_merged_model_serves_the_same_answers(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_trainer.export.merge import merge_adapter

    merge_adapter(str(tiny_dirs["adapter"]), tmp_path / "merged")
    answers = []
    for lm in (load_model(str(tmp_path / "merged")), load_model(None, str(tiny_dirs["adapter"]))):
        app = create_app(lm, ServeConfig(defaults=GenerationOptions(max_new_tokens=8)))
        with ServerThread(app, free_port()) as url:
            r = httpx.post(f"{url}/v1/completions", json={"prompt": "How did NVDA do?"}, timeout=60)
        assert r.status_code == 200, r.text
        answers.append(r.json()["output"])
    assert answers[0] == answers[1] and answers[0]


def test_qa_requests_use_the_qa_training_layout(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from kubetune_api.loader import parse_job
    from kubetune_trainer.data.prepare import prepare

    lm = load_model(None, str(tiny_dirs["adapter"]))
    question, context = "Who reported the growth?", "The AAPL filing reports revenue up 8 percent."
    # The prompt a qa training example with this question and context gets (data pipeline).
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": question, "answer": "AAPL", "context": context}) + "\n")
    doc = finance_doc(data, str(tiny_dirs["base"]))
    doc["spec"]["dataset"].update(format="qa", validation={"source": str(data)})
    (trained,) = prepare(parse_job(doc), lm.tokenizer).validation
    app = create_app(lm, ServeConfig(format="qa", defaults=GenerationOptions(max_new_tokens=4)))
    with ServerThread(app, free_port()) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/v1/completions", json={"question": f" {question} ", "context": context})
        assert r.status_code == 200, r.text
        assert r.json()["prompt"] == render_prompt(trained["prompt"], lm.tokenizer)
        assert r.json()["parsed"] is None  # sections are finance_qa's
        # Without context: the question alone, as qa_row writes it.
        r = client.post("/v1/completions", json={"question": question})
        assert r.json()["prompt"] == render_prompt(question, lm.tokenizer)
        for body, fragment in (
            ({"context": context}, "qa requests need `question`"),
            ({"question": question, "tickers": ["AAPL"]}, "do not apply to a 'qa' model"),
            ({"prompt": "hi"}, "do not apply to a 'qa' model"),
        ):
            r = client.post("/v1/completions", json=body)
            assert r.status_code == 422 and fragment in r.json()["error"], r.text
