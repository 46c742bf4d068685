"""papers: {title, abstract, full_text, authors?, journal?, year?, doi?, quality?, label?}.

Text (causal LM, masked LM): each paper is cleaned (papers_text.clean), split into
sections (the abstract first, then the headings of full_text), and each section is cut
into chunks that fit maxSeqLength. A chunk reads

    Title: <title>
    Section: <heading>

    <text>

and consecutive chunks of one section share `papers.chunkOverlap` tokens. A word longer
than a whole chunk (a DNA sequence, a table flattened to one token run) is first cut into
pieces of at most a quarter of a chunk, at token boundaries, and the pieces are glued back
without spaces wherever they share a chunk; so no chunk outgrows maxSeqLength. Tokens are
counted with the job's tokenizer when one is given (prepare(job, tokenizer)), else
approximated as ceil((characters + 1) / 4) per word — about 4 characters per token, as
for English BPE vocabularies. Two tokens are kept free for BOS/EOS.

Classification (model.task sequence_classification with papers.labelField): one example
per paper, text = title + abstract, label = the field named by labelField.

papers.minQuality drops papers whose `quality` is below it, or missing (counted as
filtered). All chunks of one paper share a split group: a paper never straddles train
and validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kubetune_api.spec_data import PapersOptions

from ..report import Problems, RowError
from ..sources import Row
from .base import Context, Record, each_row, number, text
from .papers_text import clean, sections

RESERVED = 2  # BOS + EOS
GLUE = "\x00"  # starts a piece of a long word: joined to the previous piece without a space


def approx_tokens(word: str) -> int:
    return max(1, math.ceil((len(word.lstrip(GLUE)) + 1) / 4))


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    if tokenizer is None:
        return approx_tokens
    cache: dict[str, int] = {}

    def count(word: str) -> int:
        if word not in cache:
            ids = tokenizer(" " + word.lstrip(GLUE), add_special_tokens=False)["input_ids"]
            cache[word] = len(ids)
        return cache[word]

    return count


def split_long_words(
    words: list[str], budget: int, count: Callable[[str], int], tokenizer: Any = None
) -> list[str]:
    """Words of more than `budget` tokens (no chunk could hold them) cut into pieces of at
    most budget // 4 tokens (at the tokenizer's token boundaries when it reports offsets,
    else every 4 * limit - 1 characters); every piece after the first starts with GLUE."""
    out: list[str] = []
    limit = max(1, budget // 4)
    for word in words:
        if count(word) <= budget:
            out.append(word)
            continue
        cuts: list[int] = []
        if tokenizer is not None and getattr(tokenizer, "is_fast", False):
            enc = tokenizer(word, add_special_tokens=False, return_offsets_mapping=True)
            cuts = [start for start, _ in enc["offset_mapping"][::limit]]
        if not cuts:
            cuts = list(range(0, len(word), 4 * limit - 1))
        cuts[0] = 0
        pieces = [word[a:b] for a, b in zip(cuts, [*cuts[1:], len(word)], strict=True)]
        out += [pieces[0], *(GLUE + p for p in pieces[1:] if p)]
    return out


def chunk_words(
    words: list[str],
    budget: int,
    overlap: int,
    count: Callable[[str], int],
    fits: Callable[[list[str]], bool] | None = None,
) -> list[list[str]]:
    """Greedy chunks of at most `budget` tokens; each starts with ~`overlap` tokens of the last.

    `count` estimates per word; `fits` (exact, with a tokenizer) trims a chunk that the
    estimate let through, since tokens at word seams do not always add up.
    """
    overlap = min(overlap, budget // 2)  # always move forward
    chunks: list[list[str]] = []
    start = 0
    while start < len(words):
        used, end = 0, start
        while end < len(words) and (used + count(words[end]) <= budget or end == start):
            used += count(words[end])
            end += 1
        while fits is not None and end > start + 1 and not fits(words[start:end]):
            end -= 1
        chunks.append(words[start:end])
        if end >= len(words):
            break
        back, carried = end, 0
        while (
            back > start + 1
            and overlap
            and (back == end or carried + count(words[back - 1]) <= overlap)
        ):  # at least one word of overlap when any is asked for
            back -= 1
            carried += count(words[back])
        start = back
    return chunks


def join_words(words: list[str]) -> str:
    joined = " ".join(words).replace(" " + GLUE, "").replace(GLUE, "")  # a chunk may start mid-word
    return joined.replace(" \n\n ", "\n\n").strip()


def _paper(d: Record, opts: PapersOptions) -> dict[str, Any]:
    check = Problems()
    title = check(text, d, "title")
    abstract = check(text, d, "abstract", required=False)
    full = check(text, d, "full_text", required=False)
    if abstract == "" and full == "":
        check.add("paper has neither `abstract` nor `full_text`")
    authors = d.get("authors")
    if authors is not None and (
        not isinstance(authors, list) or not all(isinstance(a, str) for a in authors)
    ):
        check.add("field `authors` must be a list of names")
    year = d.get("year")
    if year is not None and (not isinstance(year, int) or isinstance(year, bool)
                             or not 1600 <= year <= 2100):  # fmt: skip
        check.add(f"field `year` must be a year like 2021, got {year!r}")
    quality = check(number, d, "quality") if d.get("quality") is not None else None
    check.done()
    return {"title": title, "abstract": abstract, "full_text": full, "quality": quality,
            "id": d.get("doi") or title}  # fmt: skip


def papers_records(rows: Iterable[Row], ctx: Context) -> Iterator[Record]:
    opts = ctx.dataset.papers or PapersOptions()
    count = token_counter(ctx.tokenizer)
    max_len = ctx.dataset.max_seq_length

    def head_tokens(head: str) -> int:
        if ctx.tokenizer is None:
            return sum(count(w) for w in head.split())
        return len(ctx.tokenizer(head, add_special_tokens=False)["input_ids"])

    def convert(d: Record, row: Row) -> list[Record]:
        if ctx.kind == "classification" and opts.label_field:
            if opts.label_field not in d:
                raise RowError(f"missing field `{opts.label_field}` (papers.labelField)")
            d = {**d, "label": d[opts.label_field]}
        p = _paper(d, opts)
        if opts.min_quality is not None and (
            p["quality"] is None or p["quality"] < opts.min_quality
        ):
            ctx.report.filter(f"papers.minQuality {opts.min_quality} (quality below or missing)")
            return []
        title = clean(p["title"], False)
        meta = {"group": p["id"]}
        if ctx.kind == "classification":
            label = d["label"]
            if isinstance(label, bool) or not isinstance(label, int | str) or label == "":
                raise RowError(f"field `{opts.label_field}` must be a class name or integer")
            body = clean(p["abstract"] or p["full_text"], opts.drop_citations)
            return [{"text": f"{title}\n\n{body}", "label": label, "meta": meta}]
        parts = [("Abstract", p["abstract"])] if p["abstract"] else []
        parts += sections(p["full_text"]) if p["full_text"] else []
        out: list[Record] = []
        for name, raw in parts:
            body = clean(raw, opts.drop_citations)
            if not body:
                continue
            head = f"Title: {title}\nSection: {name}\n\n"
            budget = max_len - RESERVED - head_tokens(head)
            if budget < 8:
                raise RowError(f"maxSeqLength {max_len} leaves no room after the title")
            words = body.replace("\n\n", " \n\n ").split(" ")
            words = split_long_words([w for w in words if w], budget, count, ctx.tokenizer)
            fits = None
            if ctx.tokenizer is not None:

                def fits(ws: list[str], head: str = head) -> bool:
                    n = len(ctx.tokenizer(head + join_words(ws))["input_ids"])
                    return n <= max_len - 1  # the tokenizer adds BOS itself; EOS follows

            chunks = chunk_words(words, budget, opts.chunk_overlap, count, fits)
            for i, chunk in enumerate(chunks):
                out.append({"text": head + join_words(chunk),
                            "meta": {**meta, "section": name, "chunk": i}})  # fmt: skip
        if not out:
            raise RowError("paper has no text left after cleaning")
        return out

    return each_row(rows, ctx, convert)
