"""The writer's Prometheus metrics, in a registry of its own (tests run several writers in one process).

LDAP latency is measured by wrapping the connection the Directory is given, so directory.py
stays free of metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, get_args

import ldap3
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from runtime.metrics import change_latency, records, seconds_since
from schemas import topics
from schemas.config import AdSettings
from schemas.results import ProvisioningResult
from schemas.status import WriterState, WriterStatus

# The decisions that changed AD: their latency is the change's, from ingest to AD.
CHANGING_ACTIONS = frozenset({"create", "update", "delete"})
TIMED_OPERATIONS = frozenset({"search", "add", "modify", "modify_dn", "delete"})
# Samba answers small operations in milliseconds and a modify of thousands of members in about a
# second (samba-ad-dc.md §5); the connect includes the TLS handshake and the bind.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WriterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "e2ad_writer_decisions",
            "Provisioning decisions, by action and status (as on ad.results)",
            ["action", "status"],
            registry=self.registry,
        )
        self.members = Counter(
            "e2ad_writer_members",
            "Member values added to or removed from AD groups",
            ["change"],
            registry=self.registry,
        )
        self.ldap_seconds = Histogram(
            "e2ad_writer_ldap_operation_seconds",
            "LDAP operations against the DC, by operation (connect includes TLS and bind)",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ldap_operations = Counter(
            "e2ad_writer_ldap_operations",
            "LDAP operations against the DC, by operation and result (the LDAP result's name,"
            " no_answer when the connection failed; connect: success or failure)",
            ["operation", "result"],
            registry=self.registry,
        )
        self.state = Enum(
            "e2ad_writer_state",
            "running, quarantined or disabled",
            states=list(get_args(WriterState)),
            registry=self.registry,
        )
        self.failing_groups = Gauge(
            "e2ad_writer_failing_groups",
            "Groups whose latest decision failed, in the quarantine's evaluation window",
            registry=self.registry,
        )
        self.ad_unavailable = Gauge(
            "e2ad_writer_ad_unavailable", "1 while the DC is unreachable or busy", registry=self.registry
        )
        self.paused_partitions = Gauge(
            "e2ad_writer_paused_partitions",
            "Partitions of ad.desired paused: the DC unavailable, quarantine, or the configuration not enabled",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "e2ad_writer_consumer_lag",
            "Records of ad.desired not yet fetched, per partition assigned to this writer",
            ["partition"],
            registry=self.registry,
        )
        self.change_latency = change_latency(self.registry)
        self.records = records(self.registry)

    def decided(self, result: ProvisioningResult) -> None:
        self.decisions.labels(result.action, result.status).inc()
        self.members.labels("added").inc(result.members_added)
        self.members.labels("removed").inc(result.members_removed)
        self.records.labels(topics.AD_RESULTS, "out").inc()
        if result.status == "success" and result.action in CHANGING_ACTIONS and result.source_changed_at is not None:
            self.change_latency.labels("writer").observe(seconds_since(result.source_changed_at, result.at))

    def show_lag(self, lag: dict[int, int]) -> None:
        """The lag of each partition assigned now; a partition revoked leaves the gauge."""
        self.consumer_lag.clear()
        for partition, records_behind in lag.items():
            self.consumer_lag.labels(str(partition)).set(records_behind)

    def show(self, status: WriterStatus) -> None:
        self.state.state(status.state)
        self.failing_groups.set(status.failing)
        self.ad_unavailable.set(status.ad_unavailable_since is not None)

    def timed(self, connector: Callable[[AdSettings], ldap3.Connection]) -> Callable[[AdSettings], ldap3.Connection]:
        """A connector whose connections time each LDAP operation."""

        def connect(settings: AdSettings) -> ldap3.Connection:
            result = "failure"
            try:
                with self.ldap_seconds.labels("connect").time():
                    connection = connector(settings)
                result = "success"
            finally:
                self.ldap_operations.labels("connect", result).inc()
            return _TimedConnection(connection, self.ldap_seconds, self.ldap_operations)  # type: ignore[return-value]

        return connect


def ldap_result(result: object) -> str:
    """The name of an LDAP result ("success", "noSuchObject", "busy", …: bounded by the protocol's codes)."""
    description = result.get("description") if isinstance(result, dict) else None
    return description if isinstance(description, str) and description else "unknown"


class _TimedConnection:
    """An ldap3 connection whose operations are timed and counted by result; every other attribute passes through."""

    def __init__(self, connection: ldap3.Connection, histogram: Histogram, operations: Counter) -> None:
        self._connection = connection
        self._histogram = histogram
        self._operations = operations

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._connection, name)
        if name not in TIMED_OPERATIONS:
            return attribute
        histogram = self._histogram.labels(name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = "no_answer"  # an exception: the connection failed (the writer opens with raise_exceptions off)
            try:
                answer = attribute(*args, **kwargs)
                result = ldap_result(self._connection.result)
                return answer
            finally:
                histogram.observe(time.perf_counter() - started)
                self._operations.labels(name, result).inc()

        return timed
