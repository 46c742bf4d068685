"""Files generated from the chart, and the code that generates them (tests check they agree):

- deploy/prometheus/kubetune-rules.yaml: the PrometheusRule template rendered with the default
  values, as a plain Prometheus rule file (for a Prometheus without the operator);
- the values table of charts/kubetune/README.md (between its `values:start`/`values:end`
  markers), from values.yaml's `# --` comments.

Regenerate both after changing the template or values.yaml:
    PATH=.venv/bin:$PATH .venv/bin/python tests/chart/chart_files.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "kubetune"
RULES = REPO / "deploy" / "prometheus" / "kubetune-rules.yaml"
CHART_README = CHART / "README.md"
VALUES_START, VALUES_END = "<!-- values:start -->", "<!-- values:end -->"

RULES_HEADER = """\
# kubetune alerts in Prometheus rule-file format: load it with `rule_files:`.
# GENERATED from charts/kubetune/templates/prometheusrule.yaml with the chart's default
# thresholds (prometheusRule.alerts) and metrics.podMonitor.enabled=true, by
# `python tests/chart/chart_files.py`: edit the template, then regenerate. promtool checks it,
# and tests/chart/prometheus/kubetune-rules.test.yaml unit-tests every alert.
#
# Series carry the FineTuneJob's `namespace` and `finetunejob`; no scrape needs honor_labels.
# KubetuneTrainerScrapeDown expects trainer targets labelled `finetunejob` (relabel the pod
# label kubetune.io/job, as the chart's PodMonitor does; docs/operations.md#metrics).
"""


def render_rules(helm: str, *sets: str) -> str:
    """The rule groups (the PrometheusRule's spec) as a rule file, comments kept."""
    cmd = [helm, "template", "kt", str(CHART), "--show-only", "templates/prometheusrule.yaml",
           "--set", "prometheusRule.enabled=true",
           "--set", "metrics.podMonitor.enabled=true"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    spec = out.split("\nspec:\n", 1)[1]
    lines = [line[2:] if line.startswith("  ") else line for line in spec.splitlines()]
    return RULES_HEADER + "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


# -- chart README ----------------------------------------------------------------------------
def values_docs(values_yaml: str) -> list[tuple[str, str, str]]:
    """(dotted key, inline text, description) for every `# --` documented value, in order.

    A `# --` comment (continued by the `#` lines under it) documents the key on the next
    line; a block key without one is only a prefix for the keys under it.
    """
    rows: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    doc: list[str] | None = None
    for line in values_yaml.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):\s*(.*)$", line)
        if not m:
            continue  # a list item or a continuation of a block value
        indent, key, value = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if doc is not None:
            rows.append((path, value, " ".join(doc)))
            doc = None
        stack.append((indent, key))
    return rows


def values_keys(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key path of the parsed values (maps recursed into, lists and scalars are leaves)."""
    keys: set[tuple[str, ...]] = set()
    for k, v in values.items():
        path = (*prefix, str(k))
        keys.add(path)
        if isinstance(v, dict) and v:
            keys |= values_keys(v, path)
    return keys


def default_of(values: dict[str, Any], key: str) -> str:
    """The default of a dotted key as compact JSON (a map shows every key under it)."""
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return json.dumps(node, separators=(", ", ": "))


def chart_readme(current: str) -> str:
    """`current` (the README) with the table between the markers rewritten."""
    text_values = (CHART / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text_values)
    rows = ["| key | default | description |", "|---|---|---|"]
    for key, _, text in values_docs(text_values):
        default = default_of(values, key)
        shown, cell = default.replace("|", "\\|"), text.replace("|", "\\|")
        rows.append(f"| `{key}` | `{shown}` | {cell} |")
    head, rest = current.split(VALUES_START, 1)
    tail = rest.split(VALUES_END, 1)[1]
    return f"{head}{VALUES_START}\n" + "\n".join(rows) + f"\n{VALUES_END}{tail}"


def main() -> None:
    helm = shutil.which("helm") or sys.exit("helm is not on PATH (PATH=.venv/bin:$PATH)")
    RULES.write_text(render_rules(helm))
    CHART_README.write_text(chart_readme(CHART_README.read_text(encoding="utf-8")))
    print(f"wrote {RULES.relative_to(REPO)} and {CHART_README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
