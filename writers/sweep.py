"""`e2ad reconcile`: one pass that converges AD to every group's latest desired state.

ad.desired is compacted, so reading it from the start gives the latest state of each group.
The pass feeds them to the writers' group sink (writers/sink.py), so it repairs drift made by
hand in AD without waiting for the next change in Entra and decides as a writer does: every
decision in the provisioning log, failures (an unusable record too) on ad.dead-letter, and a
group it creates announced on ad.created, where a running writer's waiting parent hears it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from runtime import kafka
from runtime.active_config import read_active
from runtime.names import instance_name
from schemas import topics
from schemas.config import Settings
from writers.hold import Hold
from writers.loop import Backpressure
from writers.metrics import WriterMetrics
from writers.pending_kafka import PendingKafka
from writers.sink import DesiredRecord, GroupSink

# Where the dead letters of this pass say their desired state was read.
SOURCE = f"{topics.AD_DESIRED} (e2ad reconcile)"


class NotProvisioning(RuntimeError):
    """The active configuration is disabled or deleted: nothing may be written to AD."""


async def reconcile_all(settings: Settings) -> Counter[str]:
    """Converge every group in ad.desired once; returns how many decisions had which status.

    Raises DirectoryUnavailable or BindRejected when AD cannot decide: one pass has no later
    to retry in. Records left undecided by a quarantine count as "unconverged". Writes with the
    active configuration's containers, as the writers do, and refuses (NotProvisioning) while it
    is disabled or deleted.
    """
    active = await read_active(settings.kafka)
    if active is not None:
        if not active.provisioning or active.job is None:
            raise NotProvisioning(
                f"the active configuration (version {active.version}) is {active.state}: nothing is written to AD"
                " (`e2ad config enable`, or `e2ad config apply FILE`)"
            )
        settings = settings.with_job(active.job)
    latest = await kafka.read_latest(settings.kafka, topics.AD_DESIRED)
    records = [DesiredRecord(key, value, SOURCE, partition=None) for key, value in latest.items()]
    return await converge_once(settings, records, name=instance_name("reconcile"))


async def converge_once(settings: Settings, records: Sequence[DesiredRecord], *, name: str) -> Counter[str]:
    """Feed the records to a group sink of their own, as a writer would, once; how many decisions had which status.

    Raises DirectoryUnavailable or BindRejected when AD cannot decide. `e2ad provision --apply`
    converges its one group through here as well.
    """
    producer = kafka.producer(settings.kafka)
    sink: GroupSink | None = None
    try:
        await producer.start()  # inside: a failed start is stopped too, leaving no unclosed producer
        sink = GroupSink(
            settings,
            name=name,
            producer=producer,
            # Owns no partition of ad.desired: it records no waits, and announces what it creates.
            pending=PendingKafka(settings.kafka, producer),
            hold=Hold.from_settings(settings.writer),
            metrics=WriterMetrics(),
            status_changed=_no_status,
        )
        await sink.open()
        try:
            await sink.converge(records, asyncio.Event())
        except Backpressure as exc:
            if isinstance(exc.__cause__, Exception):
                raise exc.__cause__ from None
            sink.statuses["unconverged"] += len(records) - exc.done
        return sink.statuses
    finally:
        await producer.stop()
        if sink is not None:
            await sink.close()


async def _no_status() -> None:
    """A pass is no writer: it reports no status on e2ad.status."""
