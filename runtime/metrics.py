"""The metrics every stage exports under one name: change-to-AD latency and records in and out.

Ingest and the processors run one per process and export on prometheus_client's default registry;
the writer builds its own registry (tests run several writers in one process) with the same names.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

# From a second (a notification's round, a record folded at once) to minutes (a full round of a
# large tenant, a writer catching up after the DC was away).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def change_latency(registry: CollectorRegistry) -> Histogram:
    """Seconds from e2ad learning of a change to a stage having finished it (docs/operations.md, Monitoring)."""
    return Histogram(
        "e2ad_change_latency_seconds",
        "Seconds from e2ad learning of a change to this stage having finished it, by stage",
        ["stage"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


def records(registry: CollectorRegistry) -> Counter:
    """Kafka records a stage consumed or published, by topic and direction (in, out)."""
    return Counter(
        "e2ad_records", "Kafka records this stage consumed (in) or published (out)", ["topic", "direction"],
        registry=registry,
    )  # fmt: skip


def seconds_since(at: dt.datetime, now: dt.datetime) -> float:
    """The latency of something that started at `at`; never negative (clocks of two hosts may differ)."""
    return max((now - at).total_seconds(), 0.0)


# Ingest's and the processors': one stage per process, on the default registry.
CHANGE_LATENCY = change_latency(REGISTRY)
