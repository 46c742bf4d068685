"""How a conversation becomes prompt text + completion text.

`template` (dataset.template):

- `chat` — the tokenizer's own chat template (`apply_chat_template`); the prompt is the
  conversation up to the last assistant turn with the generation prompt added, the
  completion is what the template renders for that last turn.
- `alpaca` — this fixed layout (PREAMBLE is replaced by dataset.systemPrompt when set)::

      Below is an instruction that describes a task. Write a response that appropriately
      completes the request.

      ### Instruction:
      {user turn}

      ### Response:
      {assistant turn}

  Earlier turns of a multi-turn chat repeat the Instruction/Response pair; the completion
  is the last assistant turn. The preamble is one line; it is wrapped above for reading.
- `plain` — the turns' texts joined by newlines; the completion follows the prompt after
  one newline.
- `auto` — chat when the tokenizer has a chat template, else alpaca.

Only the last assistant turn is the completion (the loss target); earlier turns are prompt.
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.errors import ConfigError

from .chat_frame import Frame, Roles, frame_for, roles_of, turn_off

PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def resolve(template: str, tokenizer: Any) -> str:
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "alpaca"
    if template == "chat" and not has_chat:
        raise ConfigError(
            "dataset.template is chat but the tokenizer has no chat template; "
            "use template alpaca or plain, or a tokenizer with a chat_template"
        )
    return template


def messages_of(record: dict[str, Any], system_prompt: str | None = None) -> list[dict[str, str]]:
    msgs = list(record.get("messages") or [])
    if not msgs:
        msgs = [
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": record["completion"]},
        ]
    if system_prompt and msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


def render(
    messages: list[dict[str, str]], tokenizer: Any, template: str = "auto"
) -> tuple[str, str]:
    """(prompt, completion) text for a conversation ending with an assistant turn."""
    kind = resolve(template, tokenizer)
    head, last = messages[:-1], messages[-1]["content"]
    if kind == "chat":
        prompt = tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=True)
        return _split_chat(prompt, tokenizer.apply_chat_template(messages, tokenize=False), last)
    if kind == "alpaca":
        system = next((m["content"] for m in head if m["role"] == "system"), PREAMBLE)
        blocks = [system]
        for m in head:
            if m["role"] == "user":
                blocks.append(f"### Instruction:\n{m['content']}")
            elif m["role"] == "assistant":
                blocks.append(f"### Response:\n{m['content']}")
        return "\n\n".join(blocks) + "\n\n### Response:\n", last
    return "\n".join(m["content"] for m in head) + "\n", last


def _split_chat(prompt: str, full: str, last: str) -> tuple[str, str]:
    if full.startswith(prompt):
        return prompt, full[len(prompt) :]
    return prompt, last  # a template that rewrites history: fall back to the raw turn


def render_batch(
    conversations: list[list[dict[str, str]]], tokenizer: Any, template: str = "auto"
) -> list[tuple[str, str]]:
    """`render` of each conversation. A chat template renders by proven frames where it can
    (chat_frame.py: string concatenation, checked against jinja), and the other rows in
    two apply_chat_template calls for the batch (prompts, full conversations) instead of
    two calls per conversation."""
    if resolve(template, tokenizer) != "chat" or any(len(m) < 2 for m in conversations):
        # (no head: render() raises the tokenizer's own error for an empty conversation)
        return [render(m, tokenizer, template) for m in conversations]
    out: list[tuple[str, str] | None] = [None] * len(conversations)
    sampled: dict[Roles, int] = {}  # the first framed row of each shape: checked below
    frames: dict[Roles | None, Frame | None] = {}  # looked up once per shape and batch
    for i, m in enumerate(conversations):
        roles = roles_of(m)
        if roles not in frames:
            frames[roles] = frame_for(tokenizer, roles)
        frame = frames[roles]
        if frame is not None:
            contents = [t["content"] for t in m]
            out[i] = _split_chat(*frame.render(contents), contents[-1])
            sampled.setdefault(roles, i)  # type: ignore[arg-type]
    if sampled:
        idx = list(sampled.values())
        if _jinja([conversations[i] for i in idx], tokenizer) != [out[i] for i in idx]:
            turn_off(tokenizer, "a framed render differed from jinja")
            out = [None] * len(conversations)
    rest = [i for i, r in enumerate(out) if r is None]
    for i, r in zip(rest, _jinja([conversations[i] for i in rest], tokenizer), strict=True):
        out[i] = r
    return out  # type: ignore[return-value]


def _jinja(conversations: list[list[dict[str, str]]], tokenizer: Any) -> list[tuple[str, str]]:
    if not conversations:
        return []
    prompts = tokenizer.apply_chat_template(
        [m[:-1] for m in conversations], tokenize=False, add_generation_prompt=True
    )
    fulls = tokenizer.apply_chat_template(conversations, tokenize=False)
    return [
        _split_chat(p, f, m[-1]["content"])
        for p, f, m in zip(prompts, fulls, conversations, strict=True)
    ]


def render_prompt(
    prompt: str, tokenizer: Any, template: str = "auto", system_prompt: str | None = None
) -> str:
    """The formatted prompt for one user turn (DPO/ranking/generation reuse this)."""
    msgs = messages_of({"prompt": prompt, "completion": ""}, system_prompt)
    return render(msgs, tokenizer, template)[0]
