"""`e2ad reconcile` beside a running writer: it decides as the writer does, through the same group sink.

A group the pass creates is announced on ad.created, so a parent waiting for it in the running
writer is completed at once; a record the pass cannot use is dead-lettered.
"""

from __future__ import annotations

import uuid

import pytest

from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.results import ProvisioningResult
from tests.integration.helpers import WAIT_SECONDS, Harness, desired, read_group, renamed
from tests.polling import until
from writers.sweep import SOURCE, reconcile_all

pytestmark = pytest.mark.integration


async def writers_result(writer: Harness, group_id: str, *, after: int) -> ProvisioningResult:
    """The next result for `group_id` that the running writer (not the reconcile pass) decided."""
    assert writer.service is not None
    name = writer.service.name

    async def decided() -> ProvisioningResult | None:
        await writer.poll(0.2)
        return next((r for r in writer.results[after:] if r.group_id == group_id and r.writer == name), None)

    return await until(decided, f"the running writer's decision for {group_id}", timeout=WAIT_SECONDS, interval=0)


async def test_reconcile_recreates_a_deleted_child_and_the_running_writer_completes_its_waiting_parent(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, ad_admin, test_ou: str
) -> None:
    settings = Settings(
        kafka=kafka_settings, ad=ad_settings, provisioning=ProvisioningSettings(target_container=test_ou)
    )
    child = desired(test_ou, name="Child")
    parent = desired(test_ou, name="Parent", groups=[child])
    unusable_key = str(uuid.uuid4()).encode()
    async with Harness(settings) as writer:
        await writer.converge(child)
        [converged] = await writer.converge(parent)
        assert (converged.status, converged.members_added) == ("success", 1)

        # Drift: the child is deleted by hand; the parent's next state then waits for it (ad.pending).
        assert ad_admin.delete(read_group(ad_admin, test_ou, child.anchor)["dn"]), ad_admin.result
        [waits] = await writer.converge(renamed(parent, description="changed after the drift"))
        assert waits.status == "warning" and child.anchor in " ".join(step.description or "" for step in waits.steps)
        assert read_group(ad_admin, test_ou, parent.anchor).get("member", []) == []
        await writer.producer.send_and_wait(topics.AD_DESIRED, b'{"group_id": 1}', key=unusable_key)

        seen = len(writer.results)
        statuses = await reconcile_all(settings)

        assert statuses["unusable"] == 1 and statuses["failure"] == 0
        completed = await writers_result(writer, parent.group_id, after=seen)
        assert completed.status in ("success", "skipped")  # the pass may have added the child already
        child_dn = read_group(ad_admin, test_ou, child.anchor)["dn"]
        members = read_group(ad_admin, test_ou, parent.anchor)["member"]
        assert [m.lower() for m in members] == [child_dn.lower()]
        await writer.caught_up()  # reconcile_all flushed its dead letter before it returned
        letters = [dict(letter.headers) for letter in writer.dead_letters if letter.key == unusable_key]
        assert SOURCE.encode() in [headers["e2ad-source"] for headers in letters]
