"""Benchmark (issue 11, finding 10): the embedded broker's memory with and without topic retention.

Feeds notification-sized records (one Graph change notification per NotificationBatch, as the
webhook persists a delivery of one, about 630 bytes) to graph.notifications on a fresh embedded
noida-db broker, through e2ad's own producer settings (runtime/kafka.py producer: acks=all), and
prints the broker's RSS (VmRSS from /proc), its peak so far (VmHWM) and its data directory's
size at intervals and at the end, and the time the broker takes to exit after SIGTERM.

Two variants, each on its own broker, in this order:
- baseline: graph.notifications without retention, as e2ad created it before topic_configs;
- retained: the topic created by kafka.apply_topic_specs, the code path of ensure_topics, with
  its spec from kafka.topic_specs. The soak lasts a minute, not 6 hours, so its retention.ms and
  segment.ms are scaled down (--retention-ms, --segment-ms): noida-db expires records by wall
  time, and what is measured is whether memory levels off once expiry keeps pace with the feed.

The records are sent as fast as the producer batches them, many in flight, rather than one
awaited acknowledgement at a time as the webhook does: the broker holds the same records, sooner.

Usage: .venv/bin/python scripts/bench_broker_soak.py [--records 1000000] [--quick]
       [--variants baseline,retained] [--samples 10] [--retention-ms 2000] [--segment-ms 500]

Needs no DC. The baseline at 1,000,000 records holds a few GB of RSS: the machine needs the memory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import NewTopic

from harness.services import LocalServices
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings
from schemas.notifications import ChangeNotification, NotificationBatch, ResourceData

IN_FLIGHT = 5_000  # sends awaited together: enough for the producer to fill its batches
# Distinct deliveries, encoded once and cycled: encoding each anew (0.1 ms) would halve the feed rate.
POOL = 10_000
QUICK_RECORDS = 100_000
SETTLE_SECONDS = 5.0  # after the feed: expiry and the broker's snapshot catch up


@dataclass(frozen=True)
class Sample:
    records: int
    seconds: float
    rss_mb: float
    peak_rss_mb: float  # VmHWM: RSS swings with each snapshot rewrite, its peak so far does not
    data_dir_mb: float


def notification_batch() -> NotificationBatch:
    """One delivery of one group change, shaped as Graph sends it (ids differ per record)."""
    group_id = str(uuid.uuid4())
    return NotificationBatch(
        received_at=dt.datetime.now(dt.UTC),
        endpoint="notifications",
        notifications=[
            ChangeNotification(
                id=str(uuid.uuid4()),
                subscription_id=str(uuid.uuid4()),
                subscription_expiration_date_time=dt.datetime.now(dt.UTC) + dt.timedelta(days=29),
                tenant_id=str(uuid.uuid4()),
                change_type="updated",
                resource=f"Groups/{group_id}",
                resource_data=ResourceData.model_validate(
                    {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": f"Groups/{group_id}", "id": group_id}
                ),
            )
        ],
    )


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def size_mb(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 1e6


def notifications_spec(settings: KafkaSettings, variant: str, retention_ms: int, segment_ms: int) -> NewTopic:
    [spec] = [s for s in kafka.topic_specs(settings) if s.name == topics.GRAPH_NOTIFICATIONS]
    if variant == "baseline":
        spec.topic_configs = {}
    else:
        spec.topic_configs = {**spec.topic_configs, "retention.ms": str(retention_ms), "segment.ms": str(segment_ms)}
    return spec


async def soak(variant: str, records: int, samples: int, retention_ms: int, segment_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"soak-{variant}-") as tmp:
        services = LocalServices(Path(tmp) / "services")
        settings = KafkaSettings(bootstrap_servers=await services.start_kafka())
        pid = int(json.loads(services.kafka_state.read_text())["pid"])
        spec = notifications_spec(settings, variant, retention_ms, segment_ms)
        print(f"\n{variant}: {records:,} records to {spec.name}, configs {spec.topic_configs or 'none'}", flush=True)
        client = kafka.admin(settings)
        await client.start()
        try:
            await kafka.apply_topic_specs(client, [spec])
        finally:
            await client.close()
        pool = [topics.encode(notification_batch()) for _ in range(POOL)]
        size = round(sum(map(len, pool)) / len(pool))
        every = max(1, records // samples)
        history: list[Sample] = []
        producer = kafka.producer(settings)
        await producer.start()
        started = time.monotonic()
        try:
            sent = 0
            while sent < records:
                chunk = min(IN_FLIGHT, records - sent)
                futures = [await producer.send(spec.name, pool[(sent + i) % POOL]) for i in range(chunk)]
                await asyncio.gather(*futures)
                before, sent = sent, sent + chunk
                if sent // every != before // every or sent == records:
                    history.append(_sample(sent, started, pid, services))
                    _print(history[-1])
        finally:
            await producer.stop()
        await asyncio.sleep(SETTLE_SECONDS)
        history.append(_sample(records, started, pid, services))
        print(f"  after {SETTLE_SECONDS:.0f} s idle:", end="")
        _print(history[-1])
        stopping = time.monotonic()
        await asyncio.to_thread(services.stop_kafka)
        stopped = time.monotonic() - stopping
        feed = history[-2].seconds
        print(
            f"{variant}: {records:,} records of {size} B in {feed:.1f} s ({records / feed:,.0f}/s); "
            f"end RSS {history[-1].rss_mb:,.0f} MB, peak RSS {history[-1].peak_rss_mb:,.0f} MB, "
            f"data dir {history[-1].data_dir_mb:,.0f} MB; stopped {stopped:.1f} s after SIGTERM",
            flush=True,
        )


def _sample(records: int, started: float, pid: int, services: LocalServices) -> Sample:
    return Sample(records, time.monotonic() - started, rss_mb(pid), rss_mb(pid, "VmHWM"), size_mb(services.kafka_dir))


def _print(sample: Sample) -> None:
    print(
        f"  {sample.records:>9,} records  {sample.seconds:6.1f} s  broker RSS {sample.rss_mb:7,.0f} MB"
        f" (peak {sample.peak_rss_mb:7,.0f} MB)  data dir {sample.data_dir_mb:7,.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records (about a minute)")
    parser.add_argument("--variants", default="baseline,retained")
    parser.add_argument("--samples", type=int, default=10, help="figures printed during each feed")
    parser.add_argument("--retention-ms", type=int, default=2_000, help="the retained variant's, scaled down")
    parser.add_argument("--segment-ms", type=int, default=500, help="the retained variant's, scaled down")
    args = parser.parse_args()
    records = QUICK_RECORDS if args.quick else args.records
    for variant in args.variants.split(","):
        if variant not in ("baseline", "retained"):
            parser.error(f"unknown variant {variant!r}: baseline or retained")
        asyncio.run(soak(variant, records, args.samples, args.retention_ms, args.segment_ms))


if __name__ == "__main__":
    main()
