"""The writer follows e2ad.config on the real broker and DC: it writes only while the active configuration
is enabled, and takes its containers from the latest one published, without a restart."""

from __future__ import annotations

import pytest_asyncio

from runtime import kafka
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.status import WriterStatus
from tests.active import active_configuration
from tests.integration.helpers import Harness, committed, desired, metric, read_group
from tests.integration.stages import publish
from tests.polling import until


@pytest_asyncio.fixture
async def ous(ad_admin, test_ou: str) -> tuple[str, str]:
    first, second = f"OU=First,{test_ou}", f"OU=Second,{test_ou}"
    for ou in (first, second):
        assert ad_admin.add(ou, "organizationalUnit"), ad_admin.result
    return first, second


async def apply(writer: Harness, configuration: ActiveConfiguration) -> None:
    """Publish the configuration and wait until the running writer has taken it."""
    await publish(writer.settings.kafka, topics.CONFIG, [("active", configuration)])
    assert writer.service is not None
    await until(lambda: writer.service.active == configuration, f"the writer at version {configuration.version}")


async def status(writer: Harness) -> WriterStatus:
    records = await kafka.read_latest(writer.settings.kafka, topics.STATUS)
    return topics.decode(WriterStatus, records[b"writer-under-test"])


async def test_nothing_is_written_while_disabled_and_the_waiting_state_is_written_once_enabled(
    writer: Harness, ad_admin, test_ou: str, ous: tuple[str, str]
) -> None:
    first, _ = ous
    await publish(
        writer.settings.kafka,
        topics.CONFIG,
        [("active", active_configuration(1, "disabled", target_container=first, containers=[first]))],
    )
    await writer.start_writer()
    partitions = writer.settings.kafka.partitions
    await until(lambda: metric(writer, "e2ad_writer_paused_partitions") == partitions, "every partition paused")
    state = desired(first)
    await writer.publish(state)

    await writer.poll(2.0)  # a writer that wrote would have a result within this (the other tests: < 1 s)
    assert writer.results == [] and await committed(writer.settings.kafka) == 0
    assert read_group(ad_admin, test_ou, state.anchor) is None
    disabled = await status(writer)
    assert (disabled.configuration_version, disabled.configuration_state) == (1, "disabled")

    await apply(writer, active_configuration(2, "enabled", target_container=first, containers=[first]))
    [result] = await writer.wait_results({state.group_id}, after=0)

    assert (result.action, result.status) == ("create", "success")
    assert read_group(ad_admin, test_ou, state.anchor)["dn"].endswith(f",{first}")
    assert metric(writer, "e2ad_writer_paused_partitions") == 0
    enabled = await status(writer)
    assert (enabled.configuration_version, enabled.configuration_state) == (2, "enabled")

    # Deleted pauses writing too: a change waits, unwritten, while the writer stays in its group.
    await apply(writer, active_configuration(3, "deleted"))
    await writer.publish(state.model_copy(update={"attributes": {**state.attributes, "description": "later"}}))
    await writer.poll(2.0)
    assert len(writer.results) == 1 and metric(writer, "e2ad_writer_paused_partitions") == partitions


async def test_containers_of_a_newly_published_configuration_take_effect_without_a_restart(
    writer: Harness, ad_admin, test_ou: str, ous: tuple[str, str]
) -> None:
    first, second = ous
    await publish(
        writer.settings.kafka,
        topics.CONFIG,
        [("active", active_configuration(1, target_container=first, containers=[first]))],
    )
    routed = desired(test_ou, container=second)  # a parentDistinguishedName mapping sends it to the new OU

    [refused] = await writer.converge(routed)
    assert refused.status == "failure" and "outside the containers e2ad writes in" in (refused.error_message or "")
    assert read_group(ad_admin, test_ou, routed.anchor) is None

    await apply(writer, active_configuration(2, target_container=first, containers=[first, second]))
    [created] = await writer.converge(routed)

    assert (created.action, created.status) == ("create", "success")
    assert read_group(ad_admin, test_ou, routed.anchor)["dn"].endswith(f",{second}")
    # The active target container replaces the file's for a state that names none.
    [default] = await writer.converge(desired(test_ou, container=None))
    assert default.status == "success" and default.dn is not None and default.dn.endswith(f",{first}")
