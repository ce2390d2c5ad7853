"""Ingest's Prometheus metrics beside the webhook's own: the graph worker's delta rounds and subscriptions.

`e2ad ingest` runs the webhook and the graph worker in one process, on prometheus_client's default
registry, so the webhook's /metrics shows both. The age of the last successful round and the
configured interval are gauges of their own, so an alert compares one with the other without a
constant of its own (deploy/prometheus/alerts.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from runtime.metrics import records

RECORDS = records(REGISTRY)
DELTA_ROUND_SECONDS = Histogram(
    "e2ad_graph_delta_round_seconds",
    "Delta rounds (users, then groups) by outcome (success, failure), from the first page to the cursor saved",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
DELTA_ROUND_AGE = Gauge(
    "e2ad_graph_delta_round_age_seconds",
    "Seconds since the last successful delta round ended (since the graph worker started, before the first)",
)
DELTA_INTERVAL = Gauge(
    "e2ad_graph_delta_interval_seconds", "graph.delta_interval_seconds: a delta round runs at least this often"
)
DELTA_PAGES = Counter("e2ad_graph_delta_pages", "Delta pages read from Graph, by resource", ["resource"])
DELTA_CHANGES = Counter(
    "e2ad_graph_delta_changes",
    "Change records delta rounds published, by kind (group.changed, user.removed, …)",
    ["kind"],
)
THROTTLED = Counter("e2ad_graph_throttled", "Delta pages Graph throttled (429) after the SDK's own retries")
SUBSCRIPTION_EXPIRY = Gauge(
    "e2ad_graph_subscription_expires_at_seconds",
    "When the kept Graph subscription of a resource expires (Unix time; subtract time() for the seconds left)",
    ["resource"],
)


class RoundClock:
    """When the last delta round succeeded, for the age gauge; the worker's start stands in before the first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_success = clock()

    def succeeded(self) -> None:
        self._last_success = self._clock()

    def age(self) -> float:
        return self._clock() - self._last_success
