"""qa, instruction and chat rows -> SFT records.

Accepted rows (after field_map):
- qa:          {question, answer, context?}
- instruction: {instruction, input?, output}  or  {prompt, response}  or  {prompt, completion}
- chat:        {messages: [{role: system|user|assistant, content}, ...]} ending with assistant;
               content is a string or a list of text parts [{type: text, text}, ...]
               (joined by a blank line)

Every problem of a row is reported (up to report.MAX_PER_ROW), not only the first.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from ..report import Problems, RowError
from ..sources import Row
from .base import Record, sft, text

ROLES = ("system", "user", "assistant")


def qa_prompt(question: str, context: str | None = None) -> str:
    """The user message of a qa example (context, a blank line, then the question); the
    server builds its qa requests with it, so they read exactly as training examples."""
    question, context = question.strip(), (context or "").strip()
    return f"{context}\n\nQuestion: {question}" if context else question


def qa_row(d: Record, row: Row) -> list[Record]:
    check = Problems()
    question, answer = check(text, d, "question"), check(text, d, "answer")
    context = check(text, d, "context", required=False)
    check.done()
    return [sft(qa_prompt(question, context), answer)]


def instruction_row(d: Record, row: Row) -> list[Record]:
    check = Problems()
    if "instruction" in d or "output" in d:
        instruction, output = check(text, d, "instruction"), check(text, d, "output")
        extra = check(text, d, "input", required=False)
        check.done()
        return [sft(f"{instruction}\n\n{extra}" if extra else instruction, output)]
    prompt = check(text, d, "prompt")
    key = "response" if "response" in d or "completion" not in d else "completion"
    answer = check(text, d, key)
    check.done()
    return [sft(prompt, answer)]


def content_text(content: Any, where: str) -> str:
    """A message's text: a string, or a list of parts ({type: text, text}) joined by blank
    lines (the OpenAI layout). Other part types cannot be trained on here."""
    if isinstance(content, str):
        if not content.strip():
            raise RowError(f"{where} has empty or missing `content`")
        return content.strip()
    if isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                found = f"type {kind!r}" if kind else type(part).__name__
                raise RowError(f"{where}.content[{j}] is not a text part ({found}); only "
                               "{type: text, text: ...} parts can be trained on")  # fmt: skip
            if part["text"].strip():
                texts.append(part["text"].strip())
        if texts:
            return "\n\n".join(texts)
        raise RowError(f"{where}.content has no text in its {len(content)} part(s)")
    if content is None:
        raise RowError(f"{where} has empty or missing `content`")
    raise RowError(f"{where}.content must be a string or a list of text parts, "
                   f"got {type(content).__name__}")  # fmt: skip


def chat_row(d: Record, row: Row) -> list[Record]:
    msgs = d.get("messages")
    if msgs is None:
        raise RowError("missing field `messages`")
    if not isinstance(msgs, list) or not msgs:
        raise RowError("field `messages` must be a non-empty list of {role, content}")
    clean: list[dict[str, str]] = []
    check = Problems()
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            check.add(f"messages[{i}] must be an object with role and content")
            continue
        role = m.get("role")
        if role is None:
            check.add(f"messages[{i}] has no `role`")
        elif role not in ROLES:
            check.add(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
        elif role == "system" and i != 0:
            check.add(f"messages[{i}]: a system message must come first")
        content = check(content_text, m.get("content"), f"messages[{i}] ({role})")
        if role in ROLES and content is not None:
            clean.append({"role": role, "content": content})
    check.done()
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
