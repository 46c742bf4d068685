"""Medical and genomics metrics, selected by `evaluation.metrics` (any dataset format).

- medical_mcq: `answer_accuracy` on multiple-choice questions: the option the answer
  chooses (its letter, or the text of exactly one option) against the reference's. A
  question is multiple-choice when its prompt lists options (`A) ...`, `(B) ...`, `C. ...`,
  `D: ...`, one per line, at least two) and the reference names one of them; the others
  are not counted (`mcq_examples` says how many were).
- genomics, on generated answers (sft): `gene_symbol_recall` and `variant_recall` (the
  reference's gene symbols / variants found verbatim in the answer, pooled over examples),
  and `unsupported_variant_rate` (answers naming a variant that neither the prompt nor the
  reference has: an invented variant is worse than a missing one in a lab).
- genomics, on text (papers): `gene_cloze_accuracy`: the text up to a gene symbol or
  variant is given, and the model must continue with exactly that name (greedy).

Rates over zero examples are None, as in domain.py.
"""

from __future__ import annotations

import re
from typing import Any

Record = dict[str, Any]
Metrics = dict[str, float | None]

# `A) text`, `(B) text`, `C. text`, `D: text` at the start of a line.
_OPTION = re.compile(r"^[ \t]*\(?([A-H])[).:][ \t]+(\S.*?)[ \t]*$", re.MULTILINE)
_CHOICE = (
    re.compile(r"\b(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*\(?([A-H])\b(?![.'’]\w)", re.I),
    re.compile(r"^\s*\(?([A-H])(?:[).:]|\s*$|\s+[-–])"),  # "B) ...", "(B)", "B." or just "B"
)
# HGVS c./g./p. variants, rsIDs, protein changes written V600E (variants first: a variant
# is not also counted as a gene). Gene symbols: HGNC style, capitals and digits, with a
# digit or at least three letters, minus words that look like symbols but are not genes.
_AA = "ACDEFGHIKLMNPQRSTVWY"
_VARIANT = re.compile(
    r"\b[cgmnr]\.[0-9_+\-*]+(?:[ACGT]>[ACGT]|del[ACGT]*|dup[ACGT]*|ins[ACGT]+)"
    r"|\bp\.\(?(?:[A-Z][a-z]{2}\d+(?:[A-Z][a-z]{2}|Ter|fs\*?\d*|\*)|[A-Z]\d+[A-Z*])\)?"
    rf"|\brs\d{{3,}}\b|\b[{_AA}]\d{{1,4}}[{_AA}*](?![\w*])"
)
_GENE = re.compile(r"\b(?=[A-Z0-9-]*[A-Z])[A-Z][A-Z0-9]{1,9}(?:-[A-Z0-9]{1,4})?\b")
NOT_GENES = frozenset({
    "DNA", "RNA", "MRNA", "CDNA", "PCR", "QPCR", "SNP", "SNV", "CNV", "GWAS", "HGVS", "NGS",
    "WGS", "WES", "USA", "UK", "EU", "FDA", "NIH", "WHO", "ICU", "BMI", "HIV", "AIDS", "COVID",
    "ACMG", "VUS", "LOF", "MAF", "OR", "CI", "SD", "SE", "HR", "RR", "ID", "NA", "II", "III",
    "IV", "GRCH37", "GRCH38", "HG19", "HG38", "TCGA", "ATP", "GTP", "ADP", "CT", "MRI", "ECG",
    "EKG", "UTR", "ORF", "AND", "THE", "FOR", "NOT",
})  # fmt: skip


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def options(prompt: str) -> dict[str, str]:
    """{letter: option text} listed in a prompt ({} unless at least two)."""
    found = {m.group(1): m.group(2) for m in _OPTION.finditer(prompt)}
    return found if len(found) >= 2 else {}


def chosen_option(text: str, opts: dict[str, str]) -> str | None:
    """The letter an answer picks: stated (`B`, `(B)`, `Answer: B`), else the one option
    whose text it contains. None when it names none or several."""
    for pattern in _CHOICE:
        m = pattern.search(text)
        if m and m.group(1).upper() in opts:
            return m.group(1).upper()
    low = text.lower()
    hits = [k for k, v in opts.items() if v.lower().rstrip(".") in low]
    return hits[0] if len(hits) == 1 else None


def mcq_metrics(outputs: list[str], records: list[Record]) -> Metrics:
    judged = hits = 0
    for out, rec in zip(outputs, records, strict=True):
        opts = options(rec.get("prompt", ""))
        truth = chosen_option(rec.get("completion", ""), opts) if opts else None
        if truth is None:
            continue  # not a multiple-choice question (or its reference names no option)
        judged += 1
        hits += chosen_option(out, opts) == truth
    return {"answer_accuracy": _rate(hits, judged), "mcq_examples": float(judged)}


def variants(text: str) -> set[str]:
    return {m.group(0).strip("()") for m in _VARIANT.finditer(text)}


def gene_symbols(text: str) -> set[str]:
    masked = _VARIANT.sub(" ", text)
    return {g for g in _GENE.findall(masked) if g not in NOT_GENES}


def genomics_metrics(outputs: list[str], records: list[Record]) -> Metrics:
    genes_ref = genes_kept = vars_ref = vars_kept = unsupported = 0
    judged = 0
    for out, rec in zip(outputs, records, strict=True):
        ref, prompt = rec.get("completion", ""), rec.get("prompt", "")
        g, v = gene_symbols(ref), variants(ref)
        said_g, said_v = gene_symbols(out), variants(out)
        judged += bool(g or v)
        genes_ref, genes_kept = genes_ref + len(g), genes_kept + len(g & said_g)
        vars_ref, vars_kept = vars_ref + len(v), vars_kept + len(v & said_v)
        unsupported += bool(said_v - v - variants(prompt))
    return {
        "gene_symbol_recall": _rate(genes_kept, genes_ref),
        "variant_recall": _rate(vars_kept, vars_ref),
        "unsupported_variant_rate": _rate(unsupported, len(outputs)),
        "genomic_entity_examples": float(judged),
    }


def cloze_items(records: list[Record], limit: int, min_chars: int = 80) -> list[tuple[str, str]]:
    """(text before, name) for the first gene symbol or variant after min_chars of each
    text record (enough text before it to predict from), up to `limit` items."""
    items: list[tuple[str, str]] = []
    for rec in records:
        body = rec.get("text", "")
        spans = [(m.start(), m.group(0)) for m in _VARIANT.finditer(body)]
        masked = _VARIANT.sub(lambda m: " " * len(m.group(0)), body)
        spans += [(m.start(), m.group(0)) for m in _GENE.finditer(masked)
                  if m.group(0) not in NOT_GENES]  # fmt: skip
        later = sorted(s for s in spans if s[0] >= min_chars)
        if later:
            start, name = later[0]
            items.append((body[:start], name))
        if len(items) >= limit:
            break
    return items


def gene_cloze_metrics(lm: Any, records: list[Record], limit: int) -> Metrics:
    """Greedy continuation of each cloze item's prefix must start with its gene/variant."""
    import torch

    items = cloze_items(records, limit)
    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    hits = 0
    for prefix, name in items:
        ids = tok(prefix.rstrip(" "), return_tensors="pt").input_ids[:, -256:].to(device)
        want = len(tok(" " + name, add_special_tokens=False).input_ids) + 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=want, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        said = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        hits += said.startswith(name) and not said[len(name) : len(name) + 1].isalnum()
    return {
        "gene_cloze_accuracy": _rate(hits, len(items)),
        "gene_cloze_examples": float(len(items)),
    }


# evaluation.metrics name -> the metrics it adds to generated answers (sft records).
EXTRA_METRICS = {"medical_mcq": mcq_metrics, "genomics": genomics_metrics}
