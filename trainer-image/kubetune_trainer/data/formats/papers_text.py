"""Cleaning and sectioning of scientific text, careful with biology.

What `clean` does, in order:
1. Unicode: NFKC per character (ligatures, full-width letters, no-break spaces become
   plain), EXCEPT superscripts and subscripts, which are kept: NFKC would turn 10⁻⁸ into
   10-8 and change its meaning. Soft hyphens are removed.
2. De-hyphenation: `geno-\\nmic` becomes `genomic` only when both sides are lowercase
   letters; `BRCA1-\\nassociated` becomes `BRCA1-associated` (a symbol, a digit or a
   capital on the left means a real compound: the hyphen stays, the break goes).
3. Reference list: everything from a references heading to the end is dropped. A
   references heading is a line reading References / Bibliography / Literature Cited /
   Works Cited / Reference List in any case and any heading style the sectioner knows
   (`## References`, `5. References`, `5.1 References`, `REFERENCES`, `References:`).
   `sections` stops at that heading too, so a reference list is never a section.
4. Citations (drop_citations): numeric brackets like [12], [3, 4], [5-7] are removed.
   Brackets with letters ([Ca2+], [BRCA1]) are not citations and stay.
5. Whitespace: single line breaks inside a paragraph become spaces, runs of spaces
   collapse, paragraphs (blank-line separated) stay.
Gene and protein symbols, HGVS variants (p.Val600Glu, c.68_69delAG), rsIDs and DNA
sequences pass through unchanged: no step lowercases, splits or rewrites a token.
"""

from __future__ import annotations

import re
import unicodedata

_HEADINGS = (
    "abstract", "introduction", "background", "methods", "materials and methods",
    "results", "discussion", "conclusion", "conclusions", "results and discussion",
    "acknowledgements", "acknowledgments", "data availability",
)  # fmt: skip
# A references heading in every style heading_of knows: `## X`, `5. X`, `5.1 X`, bare `X`.
_REFS = re.compile(
    r"^[ \t]*(?:#+[ \t]*|\d+(?:\.\d+)*\.?[ \t]*)?(?:references|bibliography|literature[ \t]+cited|"
    r"works[ \t]+cited|reference[ \t]+list)[ \t]*:?[ \t]*$", re.IGNORECASE | re.MULTILINE,
)  # fmt: skip
_CITATION = re.compile(r"[ \t]?\[\d+(?:\s*[,;–-]\s*\d+)*\]")
_HYPHEN_BREAK = re.compile(r"(?<![A-Za-z0-9])([a-z]+)-[ \t]*\n[ \t]*([a-z]+)")
_COMPOUND_BREAK = re.compile(r"(?<=\S)-[ \t]*\n[ \t]*(?=\w)")
_NUMBERED = re.compile(r"^(?:#+\s*|\d+(?:\.\d+)*\.?\s+)([A-Z][^.!?]{0,60})$")


def nfkc_careful(text: str) -> str:
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch == "\u00ad":
            continue
        decomposition = unicodedata.decomposition(ch)
        if decomposition.startswith(("<super>", "<sub>")):
            out.append(ch)
        else:
            out.append(unicodedata.normalize("NFKC", ch))
    return "".join(out)


def dehyphenate(text: str) -> str:
    return _COMPOUND_BREAK.sub("-", _HYPHEN_BREAK.sub(r"\1\2", text))


def drop_references(text: str) -> str:
    m = _REFS.search(text)
    return text[: m.start()] if m else text


def normalize_whitespace(text: str) -> str:
    paragraphs = re.split(r"\n[ \t]*\n+", text.replace("\r\n", "\n"))
    joined = (re.sub(r"\s+", " ", p).strip() for p in paragraphs)
    return "\n\n".join(p for p in joined if p)


def clean(text: str, drop_citations: bool = True) -> str:
    text = dehyphenate(nfkc_careful(text))
    text = drop_references(text)
    if drop_citations:
        text = _CITATION.sub("", text)
    return normalize_whitespace(text)


def heading_of(line: str) -> str | None:
    """The section name when a line is a heading (known word, `## X` or `2. Methods`)."""
    s = line.strip().rstrip(":")
    if not s or len(s) > 70:
        return None
    bare = re.sub(r"^(?:#+\s*|\d+(?:\.\d+)*\.?\s+)", "", s)
    if bare.lower() in _HEADINGS:
        return bare
    m = _NUMBERED.match(s)
    return m.group(1).strip() if m and line.lstrip().startswith(("#", *"0123456789")) else None


def is_references_heading(line: str) -> bool:
    return _REFS.fullmatch(line.rstrip("\r\n")) is not None


def sections(full_text: str) -> list[tuple[str, str]]:
    """(heading, raw body) in order; text before the first heading is `Body`. Reading
    stops at a references heading: the reference list and what follows are not text."""
    out: list[tuple[str, list[str]]] = [("Body", [])]
    for line in full_text.splitlines():
        if is_references_heading(line):
            break
        name = heading_of(line)
        if name is not None:
            out.append((name, []))
        else:
            out[-1][1].append(line)
    return [(name, "\n".join(lines)) for name, lines in out if "\n".join(lines).strip()]
