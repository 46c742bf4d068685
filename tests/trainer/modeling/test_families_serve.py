"""Each family serves over HTTP: prompts in its own chat template, the merged model and
base + adapter give the same greedy answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kubetune_api.spec_training import GenerationOptions
from kubetune_trainer.evaluation.models import load_model
from kubetune_trainer.serving.app import ServeConfig, create_app
from kubetune_trainer.serving.server import ServerThread
from tests.support.net import free_port
from tests.support.trainer.families import CHAT_MARKERS, FAMILIES

PROMPT = "What color is the ring? It is pink."


@pytest.mark.parametrize("family", FAMILIES)
def test_family_serves_in_its_chat_template(
    family: str, family_trained: Callable[[str], dict[str, Any]]
) -> None:
    run = family_trained(family)
    user, assistant = CHAT_MARKERS[family]
    answers = []
    for lm in (load_model(str(run["merged"])), load_model(None, str(run["adapter"]))):
        app = create_app(lm, ServeConfig(defaults=GenerationOptions(max_new_tokens=6)))
        with ServerThread(app, free_port()) as url, httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/completions", json={"prompt": PROMPT})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["prompt"].startswith(user + PROMPT), body["prompt"]
            assert body["prompt"].endswith(assistant)
            assert body["completion_tokens"] <= 6  # a tiny random model may stop at once
            answers.append(body["output"])
            assert c.post("/v1/completions", json={"question": "q"}).status_code == 422
    assert answers[0] == answers[1]
