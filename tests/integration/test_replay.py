"""`e2ad replay` on the real broker and DC, against the Graph stand-in.

The processors replayed from the beginning into a fresh state converge AD to the state it had,
and never publish a historical state meanwhile (a member added then removed stays out); the
writers replayed after drift made by hand in AD repair it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import ldap3
import pytest
from aiokafka import TopicPartition

from harness.pipeline import Pipeline, operator_environment
from harness.standin import running_standin
from runtime import kafka
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, Settings
from schemas.desired import DesiredGroup
from tests.integration.helpers import create_ad_user, member_dns, pipeline_settings, read_group
from tests.integration.stages import e2ad, run_e2ad
from tests.polling import until

pytestmark = pytest.mark.integration


async def desired_records(settings: KafkaSettings) -> dict[tuple[int, int], DesiredGroup]:
    """Every record of ad.desired now, by (partition, offset)."""
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        partitions = [
            TopicPartition(topics.AD_DESIRED, p) for p in sorted(reader.partitions_for_topic(topics.AD_DESIRED) or ())
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        end = await reader.end_offsets(partitions)
        seen: dict[tuple[int, int], DesiredGroup] = {}
        while any([await reader.position(tp) < end[tp] for tp in partitions]):
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                seen.update(
                    {(tp.partition, r.offset): topics.decode(DesiredGroup, r.value) for r in records if r.value}
                )
        return seen
    finally:
        await reader.stop()


async def test_replays_converge_ad_to_the_latest_state_and_never_publish_a_removed_member(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path, measured: Any
) -> None:
    users = [create_ad_user(ad_admin, test_ou, f"rp-u{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
    async with running_standin() as standin:
        tenant = standin.tenant
        kept, removed = (
            tenant.add_user(dn, onPremisesObjectIdentifier=guid, onPremisesSyncEnabled=True).object_id
            for dn, guid in users
        )
        kept_dn, removed_dn = (dn.lower() for dn, _ in users)
        first, second, third = (tenant.add_group(name, description=name).object_id for name in ("RA", "RB", "RC"))
        for group in (first, second, third):
            tenant.add_member(group, kept)
        tenant.add_member(first, removed)
        settings: Settings = pipeline_settings(standin, kafka_settings, ad_settings, test_ou, tmp_path / "state")

        def in_ad(group: str) -> dict[str, Any] | None:
            return read_group(ad_admin, test_ou, f"Group_{group}")

        def members(group: str) -> set[str] | None:
            found = in_ad(group)
            return None if found is None else {dn.lower() for dn in member_dns(found)}

        def converged() -> bool:
            return members(first) == {kept_dn} and all(members(g) == {kept_dn} for g in (second, third))

        logs = tmp_path / "logs"
        async with (
            Pipeline(settings, stages=("ingest",), log_dir=logs) as ingest,
            Pipeline(settings, stages=("process",), log_dir=logs) as processors,
            Pipeline(settings, stages=("write",), log_dir=logs) as writers,
        ):
            await until(lambda: members(first) == {kept_dn, removed_dn}, "RA with both members", timeout=60)
            tenant.remove_member(first, removed)
            await until(converged, "the member removed from RA in AD", timeout=60)
            refused = await run_e2ad(operator_environment(settings), "replay", "processors", "--from", "0", expect=1)
            assert "the processors are running (e2ad-processors has 1 members now" in refused
            await processors.stop()
            before = await desired_records(kafka_settings)
            history = [state for state in before.values() if state.group_id == first]
            assert any(removed in member_ids(s) for s in history), "the history holds RA with the removed member"

            # (1) The processors, from the beginning, into a fresh state.
            dry = await e2ad(settings, "replay", "processors", "--from", "beginning", "--dry-run")
            assert "replay processors: consumer group e2ad-processors re-reads graph.changes" in dry
            assert dry.rstrip().endswith("dry run: nothing changed")
            started = time.monotonic()
            planned = await e2ad(settings, "replay", "processors", "--from", "beginning", "--wait")
            assert "users, groups and applied offsets cleared" in planned
            await processors.start("process")

            async def republished() -> list[DesiredGroup] | None:
                after = [s for at, s in (await desired_records(kafka_settings)).items() if at not in before]
                return after if {s.group_id for s in after} >= {first, second, third} else None

            after = await until(republished, "every group published again after the replay", timeout=60)
            measured(
                f"replay processors --from beginning: every group published again in {time.monotonic() - started:.1f} s"
            )
            # The safety claim: no state published by the replay puts the removed member back.
            assert all(removed not in member_ids(s) for s in after), after
            latest = {s.group_id: s for _, s in sorted(before.items())}
            assert {s.group_id: member_ids(s) for s in after} == {
                g: member_ids(latest[g]) for g in (first, second, third)
            }
            await until(converged, "AD as it was", timeout=30)

            # (2) Drift by hand in AD with the writer stopped, then the writers replayed.
            await writers.stop()
            assert ad_admin.modify(in_ad(first)["dn"], {"member": [(ldap3.MODIFY_DELETE, [kept_dn])]}), ad_admin.result
            assert ad_admin.modify(in_ad(second)["dn"], {"description": [(ldap3.MODIFY_REPLACE, ["by hand"])]})
            assert ad_admin.delete(in_ad(third)["dn"]), ad_admin.result
            assert members(first) == set() and in_ad(third) is None
            planned = await e2ad(settings, "replay", "writers", "--from", "beginning", "--wait")
            assert "replay writers: consumer group e2ad-writers re-reads ad.desired" in planned
            started = time.monotonic()
            await writers.start("write")
            await until(
                lambda: converged() and in_ad(second)["description"] == ["RB"], "AD repaired by the writers", timeout=60
            )
            measured(f"replay writers: AD repaired in {time.monotonic() - started:.1f} s")
            assert {**ingest.exited(), **processors.exited(), **writers.exited()} == {}


def member_ids(state: DesiredGroup) -> set[str]:
    return {m.id for m in state.members}
