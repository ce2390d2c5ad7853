"""The writer's /readyz and metrics on the real broker and the real DC: not ready while it holds,
ready once writing and caught up; a change's latency, LDAP operations by result, records, lag."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WriterSettings
from tests.active import active_configuration
from tests.integration.helpers import Harness, desired, metric
from tests.integration.stages import publish
from tests.polling import until


@pytest_asyncio.fixture
async def writer(kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str) -> AsyncIterator[Harness]:
    """A writer on the test OU serving /readyz and /metrics on a free port."""
    settings = Settings(
        kafka=kafka_settings,
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=test_ou),
        writer=WriterSettings(web_port=0),
    )
    async with Harness(settings) as harness:
        yield harness


async def get(writer: Harness, path: str) -> tuple[int, str]:
    assert writer.service is not None
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{writer.service.web_port}{path}") as got:
        return got.status, await got.text()


async def test_ready_once_writing_and_caught_up_and_a_change_is_timed_from_its_source(
    writer: Harness, test_ou: str
) -> None:
    kafka_settings = writer.settings.kafka
    configuration = {"target_container": test_ou, "containers": [test_ou]}
    await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(1, "disabled", **configuration))])
    await writer.start_writer()
    partitions = kafka_settings.partitions
    await until(lambda: metric(writer, "e2ad_writer_paused_partitions") == partitions, "every partition paused")

    status, body = await get(writer, "/readyz")
    assert status == 503 and "paused: the active configuration is disabled" in body
    assert (await get(writer, "/healthz"))[0] == 200  # paused by the configuration, not held: alive

    await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(2, "enabled", **configuration))])
    changed_at = dt.datetime.now(dt.UTC)
    state = desired(test_ou, source_changed_at=changed_at)
    [result] = await writer.converge(state)
    assert (result.action, result.status) == ("create", "success")

    async def ready() -> bool:
        return (await get(writer, "/readyz")) == (200, '{"status": "ready"}')

    await until(ready, "the writer ready once writing and caught up")
    # The one change that reached AD, timed from when ingest saw it to when the writer applied it.
    assert metric(writer, "e2ad_change_latency_seconds_count", stage="writer") == 1
    assert (
        0
        <= (metric(writer, "e2ad_change_latency_seconds_sum", stage="writer") or -1)
        <= (result.at - changed_at).total_seconds()
    )
    assert (metric(writer, "e2ad_writer_ldap_operations_total", operation="add", result="success") or 0) >= 1
    assert metric(writer, "e2ad_writer_ldap_operations_total", operation="connect", result="success") == 1
    assert metric(writer, "e2ad_records_total", topic=topics.AD_RESULTS, direction="out") == 1
    assert metric(writer, "e2ad_records_total", topic=topics.AD_DESIRED, direction="in") == 1
    _, exposition = await get(writer, "/metrics")
    lags = [line for line in exposition.splitlines() if line.startswith("e2ad_writer_consumer_lag{")]
    assert lags and all(line.endswith(" 0.0") for line in lags), lags
