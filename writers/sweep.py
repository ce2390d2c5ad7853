"""`e2ad reconcile`: one pass that converges AD to every group's latest desired state.

ad.desired is compacted, so reading it from the start gives the latest state of each group.
Converging them all repairs drift made by hand in AD without waiting for the next change in
Entra; every decision goes to the provisioning log as the writers' do.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pydantic

from runtime import kafka
from runtime.names import instance_name
from schemas import topics
from schemas.config import Settings
from schemas.desired import DesiredGroup
from writers.directory import Directory
from writers.provision import converge

log = logging.getLogger(__name__)


async def reconcile_all(settings: Settings) -> Counter[str]:
    """Converge every group in ad.desired once; returns how many decisions had which status."""
    latest = await kafka.read_latest(settings.kafka, topics.AD_DESIRED)
    name = instance_name("reconcile")
    directory = Directory(settings.ad)
    producer = kafka.producer(settings.kafka)
    statuses: Counter[str] = Counter()
    try:
        await producer.start()  # inside: a failed start is stopped too, leaving no unclosed producer
        await asyncio.to_thread(directory.open)
        for key, value in latest.items():
            try:
                desired = topics.decode(DesiredGroup, value)
            except pydantic.ValidationError as exc:
                log.error("skipping unusable desired state for %s: %s", key.decode(errors="replace"), exc)
                statuses["unusable"] += 1
                continue
            convergence = await asyncio.to_thread(
                converge,
                directory,
                desired,
                default_container=settings.provisioning.target_container,
                containers=settings.provisioning.write_containers,
                writer=name,
            )
            result = convergence.result
            await producer.send_and_wait(topics.AD_RESULTS, topics.encode(result), key=key)
            statuses[result.status] += 1
            if result.status != "skipped":
                log.info("%s %s %s: %s", result.action, result.status, result.anchor, result.error_message or result.dn)
    finally:
        await producer.stop()
        await asyncio.to_thread(directory.close)
    return statuses
