"""Chat-template renders by string concatenation, used only where provably the same text.

Rendering the tokenizer's jinja chat template twice per example (prompt with the
generation prompt, and the whole conversation) costs more than tokenizing it. For
conversations of one role shape (e.g. user, assistant), most templates write fixed text
around each turn's content: rendering the template ONCE with sentinel contents gives
those pieces (a "frame"), and each example is then its contents woven between them.

A frame is used only when it is exact: the same template rendered with probe contents
(empty, leading/trailing spaces and newlines, `a</think>b`, think and tool-response
blocks, jinja-looking braces, special tokens, sentinel-like characters, unicode) must
equal the frame's concatenation, prompt and conversation alike. A template that trims,
splits, rewrites, drops or tests a turn's content fails a probe and that shape keeps the
jinja render. templates.render_batch also compares each batch's first framed row of
every shape with jinja, and on any difference stops using frames of that template for
the rest of the process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Private-use characters around lowercase letters: survive a template unchanged unless it
# edits content (case, trimming, splitting), which the probes then show.
SENTINEL = "\ue000kt-turn-{}\ue001"
PROBES = (
    "",
    "  leading and trailing spaces  ",
    "\n\nnewlines around\n",
    "a</think>b",
    "<think>\nreasoning\n</think>\n\nanswer",
    "<tool_response>\n{}\n</tool_response>",  # Qwen templates test for these
    "{{ braces }} {% raw %}x{% endraw %} {# c #}",
    "<|im_end|><|im_start|>assistant\n</s><s>",
    "\ue000kt-turn-0\ue001 sentinel-like",
    "unicode ünïcödé 日本語 🙂",
    "plain words, then a question?",
)

Roles = tuple[str, ...]


@dataclass(frozen=True)
class Frame:
    """The text around each turn's content: `prompt` has n pieces for the first n-1
    contents (ending with the generation prompt), `full` n+1 pieces for all n."""

    prompt: tuple[str, ...]
    full: tuple[str, ...]

    def render(self, contents: list[str]) -> tuple[str, str]:
        """(prompt text, whole conversation text), as apply_chat_template writes them."""
        return _weave(self.prompt, contents[:-1]), _weave(self.full, contents)


def _weave(pieces: tuple[str, ...], contents: list[str]) -> str:
    out = [pieces[0]]
    for content, piece in zip(contents, pieces[1:], strict=True):
        out += (content, piece)
    return "".join(out)


def roles_of(messages: list[dict[str, Any]]) -> Roles | None:
    """The conversation's role shape, or None when a turn has more than a role and a string
    content (names, tool calls, content parts: the template may read them)."""
    roles = []
    for m in messages:
        if len(m) != 2 or not isinstance(m.get("content"), str) or "role" not in m:
            return None
        roles.append(m["role"])
    return tuple(roles)


_FRAMES: dict[tuple[Any, ...], Frame | None] = {}
_OFF: set[tuple[Any, ...]] = set()  # templates whose frames once differed from jinja


def _template_key(tokenizer: Any) -> tuple[Any, ...] | None:
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):  # several named templates: jinja picks one
        return None
    # apply_chat_template also passes the special tokens to the template
    specials = getattr(tokenizer, "special_tokens_map", {}) or {}
    return (template, repr(sorted(specials.items())))


def frame_for(tokenizer: Any, roles: Roles | None) -> Frame | None:
    """The proven frame of this template for this role shape, or None (use jinja)."""
    key = _template_key(tokenizer)
    if roles is None or len(roles) < 2 or key is None or key in _OFF:
        return None
    if (key, roles) not in _FRAMES:
        _FRAMES[(key, roles)] = _build(tokenizer, roles)
    return _FRAMES[(key, roles)]


def turn_off(tokenizer: Any, why: str) -> None:
    """No more frames for this tokenizer's template in this process."""
    key = _template_key(tokenizer)
    if key is not None and key not in _OFF:
        _OFF.add(key)
        log.warning("chat template: %s; rendering every example with jinja from now on", why)


def _conv(roles: Roles, contents: list[str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]


def _build(tokenizer: Any, roles: Roles) -> Frame | None:
    n = len(roles)
    sentinels = [SENTINEL.format(i) for i in range(n)]
    # every probe at every position: probe k gives turn i PROBES[(k + i) % len]
    contents = [sentinels] + [
        [PROBES[(k + i) % len(PROBES)] for i in range(n)] for k in range(len(PROBES))
    ]
    convs = [_conv(roles, c) for c in contents]
    try:
        prompts = tokenizer.apply_chat_template(
            [c[:-1] for c in convs], tokenize=False, add_generation_prompt=True
        )
        fulls = tokenizer.apply_chat_template(convs, tokenize=False)
    except Exception:  # e.g. a template that raises on this role order: jinja renders
        return None  # the real rows and reports the template's own error
    prompt, full = _pieces(prompts[0], sentinels[:-1]), _pieces(fulls[0], sentinels)
    if prompt is None or full is None:
        return None
    frame = Frame(prompt, full)
    for probe, p, f in zip(contents[1:], prompts[1:], fulls[1:], strict=True):
        if frame.render(probe) != (p, f):
            return None
    return frame


def _pieces(text: str, sentinels: list[str]) -> tuple[str, ...] | None:
    """`text` cut at each sentinel (each exactly once, in order), or None."""
    out, pos = [], 0
    for s in sentinels:
        at = text.find(s, pos)
        if at < 0 or text.count(s) != 1:
            return None
        out.append(text[pos:at])
        pos = at + len(s)
    out.append(text[pos:])
    return tuple(out)
