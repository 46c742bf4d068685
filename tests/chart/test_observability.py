"""Alerts and dashboard: promtool checks and unit-tests the rules, parses every dashboard
query, and no query names a metric the trainer or the operator does not export.

promtool has no bare "parse this expression" command, so each dashboard query becomes a
recording rule in a generated rules file that `promtool check rules` parses. Metric names
are then read from the (now known to be valid) expressions by a small lexer, and compared
with the names the code exports: kubetune_trainer.reporting.prometheus.METRICS and the families that
kubetune_operator.metrics.OperatorMetrics registers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_operator.metrics import OperatorMetrics
from kubetune_trainer.reporting.prometheus import METRICS as TRAINER_METRICS
from tests.support.chart.files import RULES as RULES_FILE
from tests.support.chart.files import render_rules
from tests.support.chart.helpers import REPO, run

RULES = RULES_FILE  # deploy/prometheus/kubetune-rules.yaml, rendered from the chart
RULES_TEST = Path(__file__).parent / "prometheus/kubetune-rules.test.yaml"
DASHBOARD = REPO / "deploy/grafana/kubetune-dashboard.json"

# Grafana's variables, replaced by something PromQL accepts before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
    # Aggregations: `sum by (le) (x)` puts a modifier between the name and its parenthesis.
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "limitk", "limit_ratio",
}  # fmt: skip


def series_names(family: str, kind: str) -> set[str]:
    """The sample names a Prometheus client exposes for one metric family."""
    if kind == "counter":
        return {f"{family}_total", f"{family}_created"}
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count", f"{family}_created"}
    return {family}


# Series Prometheus itself makes (KubetuneTrainerScrapeDown reads the trainer targets' `up`).
PROMETHEUS_OWN = {"up"}


def exported() -> set[str]:
    names: set[str] = set(PROMETHEUS_OWN)
    for metric in TRAINER_METRICS:
        names |= series_names(metric.name, metric.kind)
    for family in OperatorMetrics().registry.collect():
        names |= series_names(family.name, family.type)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a valid PromQL expression (check it with promtool first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    # Label lists: by (...), without (...), on (...), ignoring (...), group_x (...).
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(word)
    return names


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    board = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(<series selector>, <label>): the selector is PromQL.
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert selector, f"variable {var['name']}: unexpected query {query!r}"
            yield f"variable {var['name']}", selector.group(1)


def promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # dashboard variables in =~ matchers


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for g in groups for rule in g["rules"]]


def check_parses(promtool: str, tmp_path: Path, exprs: list[tuple[str, str]]) -> str:
    rules = [{"record": f"kubetune:check:{i}", "expr": e} for i, (_, e) in enumerate(exprs)]
    path = tmp_path / "wrapped-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": rules}]}))
    return run([promtool, "check", "rules", str(path)], check=False).stdout


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    out = run([promtool, "check", "rules", str(RULES)]).stdout
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out


def test_alert_rules_unit_tests(promtool: str) -> None:
    out = run([promtool, "test", "rules", str(RULES_TEST)]).stdout
    assert "SUCCESS" in out


def test_every_alert_has_a_promtool_unit_test() -> None:
    alerts = {name for name, _ in rule_exprs()}
    assert {
        "KubetuneJobFailed", "KubetuneJobStalled", "KubetuneJobRestartsClimbing",
        "KubetuneOperatorAbsent", "KubetuneTrainerScrapeDown", "KubetuneJobPendingTooLong",
        "KubetuneLossNotFinite", "KubetuneEvalLossRising", "KubetuneCheckpointTooOld",
    } <= alerts  # fmt: skip
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    tested = {
        t["alertname"] for group in tests for t in group["alert_rule_test"] if t["exp_alerts"]
    }
    assert tested == alerts, f"alerts never seen firing in a unit test: {alerts - tested}"


def test_the_rules_file_is_the_chart_template_rendered(helm: str) -> None:
    """deploy/prometheus/kubetune-rules.yaml == the PrometheusRule template with the defaults."""
    assert RULES.read_text() == render_rules(helm), (
        "deploy/prometheus/kubetune-rules.yaml is stale: run "
        "PATH=.venv/bin:$PATH .venv/bin/python tests/chart/chart_files.py"
    )


def test_alert_thresholds_come_from_the_chart_values(
    helm: str, promtool: str, tmp_path: Path
) -> None:
    sets = tuple(f"prometheusRule.alerts.{kv}" for kv in (
        "pendingSeconds=600", "jobFailedForSeconds=60", "checkpointMaxAgeSeconds=900",
        "evalLossRisingEvaluations=5", "operatorAbsentFor=2m", "trainerScrapeDownFor=3m",
    ))  # fmt: skip
    text = render_rules(helm, *sets)
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert "SUCCESS: 10 rules found" in run([promtool, "check", "rules", str(path)]).stdout
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert rules["KubetuneJobPendingTooLong"]["expr"].rstrip().endswith("> 600")
    assert rules["KubetuneJobFailed"]["expr"].rstrip().endswith("< 60")
    assert rules["KubetuneCheckpointTooOld"]["expr"].count("900") == 2
    assert rules["KubetuneEvalLossRising"]["expr"].rstrip().endswith(">= 5")
    assert rules["KubetuneOperatorAbsent"]["for"] == "2m"
    assert rules["KubetuneTrainerScrapeDown"]["for"] == "3m"
    # Without the PodMonitor no trainer target is labelled `finetunejob`: no such alert.
    without = render_rules(helm, "metrics.podMonitor.enabled=false")
    assert (
        "alert: KubetuneTrainerScrapeDown" not in without and "alert: KubetuneJobFailed" in without
    )


def test_no_query_uses_job_for_the_finetunejob(tmp_path: Path) -> None:
    """`job` is Prometheus's target label: rules and panels group and filter by finetunejob."""
    for where, expr in [*dashboard_queries(), *rule_exprs()]:
        assert not re.search(r"\bjob\s*(=|!=|=~|!~)", expr), f"{where}: {expr}"
        for labels in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
            assert "job" not in {x.strip() for x in labels.split(",")}, f"{where}: {expr}"


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    queries = [(where, promql(expr)) for where, expr in dashboard_queries()]
    assert len(queries) >= 15
    proc = run([promtool, "check", "rules", "/dev/null"], check=False)  # promtool itself runs
    assert proc.returncode in (0, 1)
    out = check_parses(promtool, tmp_path, queries)
    assert f"SUCCESS: {len(queries)} rules found" in out, out


def test_the_parse_check_rejects_bad_promql(promtool: str, tmp_path: Path) -> None:
    out = check_parses(promtool, tmp_path, [("bad", "sum by (job (kubetune_train_loss)")])
    assert "SUCCESS" not in out


@pytest.mark.parametrize(
    ("where", "expr"),
    [*dashboard_queries(), *rule_exprs()],
    ids=lambda x: x if len(x) < 60 else x[:57] + "...",
)
def test_queries_name_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(promql(expr))
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - exported()
    assert not unknown, f"{where}: {sorted(unknown)} are not exported by kubetune"


def test_metric_name_lexer() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, job) (rate(kubetune_x_bucket{job=~"a|b"}[5m])))'
        " / ignoring(kind) group_left(phase) kubetune_y offset 10m > bool 1e-9 or vector(0)"
    )
    assert metric_names(expr) == {"kubetune_x_bucket", "kubetune_y"}
    assert metric_names("kubetune_train_los{job='x'}") == {"kubetune_train_los"}


def test_dashboard_shows_what_operators_need() -> None:
    used = set()
    for _, expr in dashboard_queries():
        used |= metric_names(promql(expr))
    wanted = {
        "kubetune_train_loss", "kubetune_eval_loss", "kubetune_train_learning_rate",
        "kubetune_train_tokens_total", "kubetune_memory_bytes", "kubetune_train_step",
        "kubetune_train_total_steps", "kubetune_train_eta_seconds", "kubetune_jobs",
        "kubetune_job_restarts_total", "kubetune_reconcile_seconds_bucket",
    }  # fmt: skip
    assert wanted <= used, sorted(wanted - used)
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "kubetune-jobs"
    names = {v["name"] for v in board["templating"]["list"]}
    assert names == {"datasource", "namespace", "finetunejob"}


def test_runbook_links_point_at_sections_of_the_operations_guide() -> None:
    doc = (REPO / "docs/operations.md").read_text()
    # GitHub's anchor for a heading: lower case, spaces to '-', punctuation dropped.
    anchors = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)
    }
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("docs/operations.md"), url
        assert url.split("#")[1] in anchors, f"{rule['alert']}: no section #{url.split('#')[1]}"
