"""Generate papers.json: 12 short genomics-flavoured papers (fictional, deterministic).

    python examples/data/papers/generate.py

The full texts carry the mess real extractions have, so cleaning is exercised: words
hyphenated across line breaks, numeric citations like [4] and [2, 5], ligatures (ﬁ),
no-break spaces, full-width letters, superscript exponents and a reference list.
Labels (for the BERT classification example) are the paper's field.
"""

from __future__ import annotations

import json
from pathlib import Path

# (title, field, gene/variant focus, method, finding, quality, year)
PAPERS = [
    ("Germline BRCA1 and BRCA2 variants in a hereditary breast cancer cohort",
     "cancer-genomics", "BRCA1 c.68_69delAG and BRCA2 c.5946delT", "targeted panel sequencing",
     "carriers had a 4.1-fold higher risk of early-onset breast cancer", 0.92, 2021),
    ("TP53 hotspot mutations and therapy response in ovarian carcinoma",
     "cancer-genomics", "TP53 p.Arg175His and p.Arg273His", "whole-exome sequencing",
     "hotspot carriers showed shorter progression-free survival", 0.81, 2020),
    ("BRAF p.Val600Glu in colorectal tumours with microsatellite instability",
     "cancer-genomics", "BRAF p.Val600Glu", "droplet digital PCR",
     "the variant marked sporadic rather than Lynch-syndrome tumours", 0.77, 2019),
    ("EGFR p.Leu858Arg and resistance to first-generation inhibitors",
     "cancer-genomics", "EGFR p.Leu858Arg and p.Thr790Met", "longitudinal cfDNA sequencing",
     "p.Thr790Met appeared a median of 9 months before radiological progression", 0.88, 2022),
    ("KRAS G12C allele frequency across lung adenocarcinoma subtypes",
     "cancer-genomics", "KRAS p.Gly12Cys", "RNA-seq and exome sequencing",
     "G12C was enriched in smokers and mutually exclusive with EGFR drivers", 0.35, 2018),
    ("APOE ε4 and rs429358 genotype in late-onset Alzheimer disease",
     "population-genetics", "APOE rs429358 and rs7412", "genome-wide association",
     "ε4 homozygotes had a markedly earlier age at onset", 0.9, 2021),
    ("Population structure of lactase persistence alleles in East Africa",
     "population-genetics", "LCT enhancer variants rs145946881 and rs41380347",
     "low-coverage whole-genome sequencing",
     "independent persistence alleles rose in frequency within pastoralist groups", 0.74, 2020),
    ("Fine-mapping of the TCF7L2 type 2 diabetes signal",
     "population-genetics", "TCF7L2 rs7903146", "trans-ancestry fine-mapping",
     "a single credible variant explained the association in all ancestries", 0.86, 2022),
    ("Rare coding variants in PCSK9 lower LDL cholesterol",
     "population-genetics", "PCSK9 p.Arg46Leu", "exome-wide burden testing",
     "loss-of-function carriers had lower LDL and fewer coronary events", 0.42, 2017),
    ("CRISPR screens map enhancers of MYC in leukaemia cells",
     "functional-genomics", "MYC enhancer cluster", "CRISPR interference tiling screens",
     "a distal enhancer 1.7 Mb downstream controlled MYC expression", 0.83, 2021),
    ("Single-cell RNA-seq of CFTR-expressing ionocytes",
     "functional-genomics", "CFTR p.Phe508del", "single-cell RNA sequencing",
     "ionocytes expressed most CFTR transcript in the airway epithelium", 0.79, 2019),
    ("Massively parallel reporter assays of HBB promoter variants",
     "functional-genomics", "HBB promoter motif ACGTTGCA and c.-78A>G",
     "massively parallel reporter assays",
     "variants disrupting the ACGTTGCA motif reduced expression by half", 0.68, 2023),
]  # fmt: skip


def full_text(title: str, focus: str, method: str, finding: str, i: int) -> str:
    # Line breaks mimic PDF extraction; the hyphenations and citations are deliberate.
    return f"""Introduction
Genomic variation shapes disease risk, and {focus} has been studied in several co-
horts [1]. Previous work linked such variants to altered gene regu-
lation and protein function [2, 3]. Here we revisit {focus} in a larger, well-phenotyped
sample using {method}.

Methods
We enrolled {200 + 37 * i} participants after informed consent. DNA was extracted from
blood and sequenced with {method}; reads were aligned to GRCh38 and variants were called
with a joint-genotyping pipeline [4]. Variant nomenclature follows HGVS. Associations were
tested with logistic regression adjusted for age, sex and ten principal compo-
nents; the genome-wide threshold was p < 5 × 10⁻⁸ and ﬁlters removed samples with call
rate below 98%.

Results
Across the cohort, {finding}. Effect estimates were consistent across sub-
groups [5, 6], and sensitivity analyses excluding related individuals gave the same result.
The signal was specific to {focus}; no other locus passed the threshold.

Discussion
Our data support a role for {focus}. The main limitation is the modest sample size and the
single-ancestry design [7–9]. Replication in diverse populations and functional
follow-up are needed before clinical use.

References
1. Author A, Author B. Earlier study of the locus. J Genet. 2015;12:1-10.
2. Author C. Regulatory effects of coding variants. Genome Res. 2016;26:100-110.
3. Author D. Protein stability and disease. Nat Genet. 2017;49:200-210.
4. Author E. Joint genotyping at scale. Bioinformatics. 2018;34:300-310.
"""


def main() -> None:
    papers = []
    for i, (title, field, focus, method, finding, quality, year) in enumerate(PAPERS):
        abstract = (
            f"We studied {focus} using {method}. In {200 + 37 * i}\u00a0participants, "
            f"{finding} [1]. These results refine the genetic archi-\ntecture of the trait."
        )
        if i % 4 == 0:  # full-width letters as some PDF extractors emit them
            abstract = abstract.replace("We studied", "Ｗｅ studied")
        papers.append({
            "title": title, "abstract": abstract,
            "full_text": full_text(title, focus, method, finding, i),
            "authors": [f"Researcher {chr(65 + i)}", f"Researcher {chr(66 + i)}"],
            "journal": ["Genome Medicine", "Human Genetics", "Cancer Genomics"][i % 3],
            "year": year, "doi": f"10.5555/kubetune.{1000 + i}",
            "quality": quality, "label": field,
        })  # fmt: skip
    out = Path(__file__).with_name("papers.json")
    out.write_text(json.dumps(papers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(papers)} papers to {out}")


if __name__ == "__main__":
    main()
