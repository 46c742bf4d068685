"""qa, instruction and chat rows -> SFT records.

Accepted rows (after field_map):
- qa:          {question, answer, context?}
- instruction: {instruction, input?, output}  or  {prompt, response}  or  {prompt, completion}
- chat:        {messages: [{role: system|user|assistant, content}, ...]} ending with assistant
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from ..report import RowError
from ..sources import Row
from .base import Record, sft, text

ROLES = ("system", "user", "assistant")


def qa_prompt(question: str, context: str | None = None) -> str:
    """The user message of a qa example (context, a blank line, then the question); the
    server builds its qa requests with it, so they read exactly as training examples."""
    question, context = question.strip(), (context or "").strip()
    return f"{context}\n\nQuestion: {question}" if context else question


def qa_row(d: Record, row: Row) -> list[Record]:
    question, answer = text(d, "question"), text(d, "answer")
    context = text(d, "context", required=False)
    return [sft(qa_prompt(question, context), answer)]


def instruction_row(d: Record, row: Row) -> list[Record]:
    if "instruction" in d or "output" in d:
        instruction, output = text(d, "instruction"), text(d, "output")
        extra = text(d, "input", required=False)
        return [sft(f"{instruction}\n\n{extra}" if extra else instruction, output)]
    prompt = text(d, "prompt")
    key = "response" if "response" in d or "completion" not in d else "completion"
    return [sft(prompt, text(d, key))]


def chat_row(d: Record, row: Row) -> list[Record]:
    msgs = d.get("messages")
    if msgs is None:
        raise RowError("missing field `messages`")
    if not isinstance(msgs, list) or not msgs:
        raise RowError("field `messages` must be a non-empty list of {role, content}")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RowError(f"messages[{i}] must be an object with role and content")
        role = m.get("role")
        if role is None:
            raise RowError(f"messages[{i}] has no `role`")
        if role not in ROLES:
            raise RowError(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            raise RowError(f"messages[{i}] ({role}) has empty or missing `content`")
        if role == "system" and i != 0:
            raise RowError(f"messages[{i}]: a system message must come first")
        clean.append({"role": role, "content": content.strip()})
    turns = [m for m in clean if m["role"] != "system"]
    if not turns or turns[0]["role"] != "user":
        raise RowError("the first non-system message must be from the user")
    for a, b in pairwise(turns):
        if a["role"] == b["role"]:
            raise RowError(f"two {a['role']} messages in a row; turns must alternate")
    if clean[-1]["role"] != "assistant":
        raise RowError("the last message must be from the assistant (nothing to learn)")
    rec: dict[str, Any] = {
        "prompt": clean[-2]["content"],
        "completion": clean[-1]["content"],
        "messages": clean,
    }
    return [rec]
