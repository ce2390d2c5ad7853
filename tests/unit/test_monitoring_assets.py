"""deploy/: the Grafana dashboard and the Prometheus alert rules use only metrics the stages export.

Every metric name in their PromQL is looked up among the metric families the stages register:
ingest's and the processors' on the default registry (their modules imported), faust's under the
processors' prefix, and a writer's own registry. A metric renamed in code fails this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import REGISTRY, CollectorRegistry

import ingest.graph_worker
import ingest.webhook
import processors.app
from writers.metrics import WriterMetrics

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "e2ad-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
# PromQL words that look like metric names: keywords, binary operators, set operators.
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"})
KEYWORDS |= {"offset", "inf", "nan", "atan2"}
# The series names each metric family type exposes (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "stateset": ("",),
    "info": ("_info",),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's $variables allowed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # label values and string arguments
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def series_names(registry: CollectorRegistry) -> set[str]:
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    assert ingest.graph_worker and ingest.webhook  # imported for the metrics they register
    faust_metrics = CollectorRegistry()
    FaustMetrics.create(faust_metrics, processors.app.FAUST_METRICS_PREFIX)
    return series_names(REGISTRY) | series_names(faust_metrics) | series_names(WriterMetrics().registry)


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def alert_rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_extractor_finds_metrics_and_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, stage) (rate(e2ad_change_latency_seconds_bucket{stage="writer"}'
        "[$__rate_interval]))) > 3 * e2ad_graph_delta_interval_seconds and on (instance)"
        " deriv(sum without (partition) (e2ad_writer_consumer_lag)[15m:1m]) > 1e3 unless up offset 5m"
    )
    assert metric_names(expr) == {
        "e2ad_change_latency_seconds_bucket",
        "e2ad_graph_delta_interval_seconds",
        "e2ad_writer_consumer_lag",
        "up",
    }
    assert metric_names("e2ad_graph_subscription_expires_at_seconds - time() < 12 * 3600") == {
        "e2ad_graph_subscription_expires_at_seconds"
    }


def test_series_names_follow_the_exposition_of_each_type() -> None:
    names = series_names(WriterMetrics().registry)
    assert {"e2ad_writer_decisions_total", "e2ad_writer_ldap_operation_seconds_bucket", "e2ad_writer_state"} <= names
    assert "e2ad_writer_decisions" not in names  # a counter's series end in _total


@pytest.mark.parametrize(("title", "expr"), list(dashboard_exprs()))
def test_every_dashboard_metric_is_exported(title: str, expr: str, exported: set[str]) -> None:
    names = metric_names(expr)
    assert names, f"panel {title!r}: no metric in {expr!r}"
    assert names <= exported, f"panel {title!r} uses metrics no stage exports: {sorted(names - exported)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_metric_is_exported(rule: dict[str, object], exported: set[str]) -> None:
    names = metric_names(str(rule["expr"]))
    assert names, f"alert {rule['alert']}: no metric in its expr"
    assert names <= exported, f"alert {rule['alert']} uses metrics no stage exports: {sorted(names - exported)}"


def test_the_dashboard_has_the_panels_operators_need() -> None:
    titles = {title for title, _ in dashboard_exprs()}
    assert titles == {
        "Change-to-AD latency per stage (p50, p95, p99)",
        "Records in / out per stage",
        "Consumer lag",
        "Delta round age and interval",
        "Delta rounds, pages, changes, throttling",
        "Subscription seconds to expiry",
        "Notifications accepted / forged / dropped",
        "LDAP operations by result",
        "Quarantine and delete threshold",
    }
    latency = next(expr for title, expr in dashboard_exprs() if title.startswith("Change-to-AD"))
    assert "histogram_quantile(0.5," in latency


def test_the_rules_file_is_a_prometheus_rules_file() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}, group.get("name")
        for rule in group["rules"]:
            where = f"alert {rule.get('alert')!r}"
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, where
            assert re.fullmatch(r"E2ad[A-Z][A-Za-z]+", rule["alert"]), where
            assert re.fullmatch(r"\d+[smh]", rule["for"]), where
            assert rule["labels"]["severity"] in {"critical", "warning"}, where
            assert set(rule["annotations"]) == {"summary", "description"}, where
    assert [rule["alert"] for rule in alert_rules()] == [
        "E2adWriterQuarantined",
        "E2adDeleteThresholdExceeded",
        "E2adWriterLagGrowing",
        "E2adProcessorsLagGrowing",
        "E2adSubscriptionExpiring",
        "E2adNoDeltaRound",
    ]


def test_no_delta_round_compares_with_the_configured_interval() -> None:
    rule = next(rule for rule in alert_rules() if rule["alert"] == "E2adNoDeltaRound")
    assert metric_names(str(rule["expr"])) == {
        "e2ad_graph_delta_round_age_seconds",
        "e2ad_graph_delta_interval_seconds",
    }
