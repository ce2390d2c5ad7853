"""The faust processors as a real process on the real broker: changes in, desired states out."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import aiohttp

from harness.services import free_port
from schemas import topics
from schemas.changes import GroupChanged, MemberRef, UserChanged
from schemas.config import KafkaSettings
from schemas.desired import DesiredGroup
from tests.integration.stages import TopicWatcher, publish, running_stage
from tests.polling import until

GROUP = "5a0c7a52-6c3e-4d1d-9d5b-0123456789ab"
NOW = dt.datetime.now(dt.UTC)
SECURITY = {"securityEnabled": True, "mailEnabled": False, "displayName": "Engineers"}


def env(kafka_settings: KafkaSettings, tmp_path: Path, web_port: int | None = None) -> dict[str, str]:
    variables = {
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "E2AD_PROVISIONING__TARGET_CONTAINER": "OU=Groups,DC=e2ad,DC=test",
        "E2AD_STATE_DIR": str(tmp_path / "state"),
    }
    if web_port is not None:
        variables["E2AD_PROCESSORS__WEB_PORT"] = str(web_port)
    return variables


async def test_changes_become_desired_states_and_state_survives_a_restart(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    user = UserChanged(
        id="u1", observed_at=NOW, attributes={"onPremisesObjectIdentifier": "0b0e1c52-0000-4000-8000-0000000000a1"}
    )
    group = GroupChanged(
        id=GROUP,
        observed_at=NOW,
        attributes=SECURITY,
        members_added=[MemberRef(id="u1", type="user"), MemberRef(id="u2", type="user")],
    )
    async with TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired:
        port = free_port()
        with running_stage("process", env(kafka_settings, tmp_path, port), tmp_path / "process-1.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [("u1", user), (GROUP, group)])
            first = await desired.wait_for(lambda d: d.group_id == GROUP and len(d.members) == 1, timeout=60)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                    assert health.status == 200
                async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                    assert (ready.status, await ready.json()) == (200, {"status": "ready", "app": "e2ad-processors"})

                # u1 and the group are on different partitions: when the group is folded first, u1's
                # record resolves its member and publishes it again. Each fold that published is timed.
                await desired.read_to_end()
                published = sum(1 for d in desired.seen if d.group_id == GROUP)
                timed = f'e2ad_change_latency_seconds_count{{stage="processors"}} {float(published)}'

                async def observed() -> str | None:
                    # Observed once the broker acknowledged the desired state: just after it is readable.
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as metrics:
                        text = await metrics.text()
                    return text if timed in text else None

                exposition = await until(observed, f"{published} folds timed", timeout=10)
        assert "e2ad_processors" in exposition
        assert first.attributes["cn"] == "Engineers_0123456789ab"
        assert [s.id for s in first.skipped_members] == ["u2"]

        # A new worker recovers users, groups and memberships from the changelogs: a user change
        # alone must reproduce the group's whole state with the second member resolved.
        late = UserChanged(
            id="u2", observed_at=NOW, attributes={"onPremisesObjectIdentifier": "0b0e1c52-0000-4000-8000-0000000000a2"}
        )
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process-2.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [("u2", late)])
            second = await desired.wait_for(lambda d: d.group_id == GROUP and len(d.members) == 2, timeout=60)
        assert second.attributes == first.attributes
        assert {m.object_guid for m in second.members} == {
            "0b0e1c52-0000-4000-8000-0000000000a1",
            "0b0e1c52-0000-4000-8000-0000000000a2",
        }


async def test_a_malformed_change_goes_to_the_dead_letter_topic_and_the_stream_goes_on(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    from runtime import kafka

    producer = kafka.producer(kafka_settings)
    await producer.start()
    await producer.send_and_wait(topics.GRAPH_CHANGES, b'{"kind": "group.changed", "id": 7}', key=b"bad")
    await producer.stop()
    group = GroupChanged(id=GROUP, observed_at=NOW, attributes=SECURITY)
    async with (
        TopicWatcher(kafka_settings, topics.AD_DEAD_LETTER, bytes) as dead,
        TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired,
    ):
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(GROUP, group)])
            await desired.wait_for(lambda d: d.group_id == GROUP, timeout=60)
            parked = await dead.wait_for(lambda v: b'"id": 7' in v, timeout=10)
    assert parked == b'{"kind": "group.changed", "id": 7}'


async def test_records_delivered_again_after_a_restart_are_not_folded_in_twice(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Kafka delivers again what the group had not committed: the state's applied offsets skip it.

    The group's offsets are moved back to the start while the processor is stopped, so every record
    is delivered again. Folded in again, u1's add would publish G with u1 once more (a removed
    member back in AD until the removal is folded in again); skipped, nothing is published until
    the next new change.
    """
    from aiokafka import TopicPartition

    from processors.app import APP_ID
    from runtime import kafka

    guid = "0b0e1c52-0000-4000-8000-0000000000a1"
    user = UserChanged(id="u1", observed_at=NOW, attributes={"onPremisesObjectIdentifier": guid})
    added = GroupChanged(
        id=GROUP, observed_at=NOW, attributes=SECURITY, members_added=[MemberRef(id="u1", type="user")]
    )
    removed = GroupChanged(id=GROUP, observed_at=NOW, members_removed=[MemberRef(id="u1", type="user")])
    renamed = GroupChanged(id=GROUP, observed_at=NOW, attributes={"displayName": "Renamed"})
    async with TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired:
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process-1.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [("u1", user), (GROUP, added)])
            await desired.wait_for(lambda d: len(d.members) == 1, timeout=60)  # u1 and G on other partitions
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(GROUP, removed)])
            # Not merely no member: G may have been folded in before u1, with u1 skipped as not seen yet.
            await desired.wait_for(lambda d: d.group_id == GROUP and not d.members and not d.skipped_members)
            # Stop only once all three records are folded in for good: each has its applied marker
            # (an integer; state values are objects and lists). A record stopped before its marker
            # is folded in again, by design, and would publish its state a second time.
            async with TopicWatcher(kafka_settings, topics.PROCESSORS_STATE, lambda v: v and json.loads(v)) as state:
                await state.wait_for(lambda _: sum(type(v) is int for v in state.seen) == 3)

        rewind = kafka.consumer(kafka_settings, group_id=APP_ID)
        await rewind.start()
        try:
            partitions = [TopicPartition(topics.GRAPH_CHANGES, p) for p in range(kafka_settings.partitions)]
            rewind.assign(partitions)
            await rewind.commit({tp: 0 for tp in partitions})
        finally:
            await rewind.stop()

        before_restart = len(desired.seen)
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process-2.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(GROUP, renamed)])
            latest = await desired.wait_for(lambda d: d.attributes.get("displayName") == "Renamed", timeout=60)
        assert desired.seen[before_restart:] == [latest], "a record already folded in was folded in again"
        assert latest.members == []


async def test_a_lost_state_is_rebuilt_from_the_start_of_graph_changes(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """The group has consumed graph.changes (its offsets are at the end), but processors.state is empty:
    an upgrade from the faust tables, or the topic deleted. Carrying on from the committed offsets would
    fold later changes into groups without their members; the processors replay graph.changes instead."""
    from aiokafka import TopicPartition

    from processors.app import APP_ID
    from runtime import kafka

    guid = "0b0e1c52-0000-4000-8000-0000000000a1"
    user = UserChanged(id="u1", observed_at=NOW, attributes={"onPremisesObjectIdentifier": guid})
    group = GroupChanged(
        id=GROUP, observed_at=NOW, attributes=SECURITY, members_added=[MemberRef(id="u1", type="user")]
    )
    await publish(kafka_settings, topics.GRAPH_CHANGES, [("u1", user), (GROUP, group)])
    consumed = kafka.consumer(kafka_settings, group_id=APP_ID)
    await consumed.start()
    try:
        partitions = [TopicPartition(topics.GRAPH_CHANGES, p) for p in range(kafka_settings.partitions)]
        consumed.assign(partitions)
        await consumed.commit(await consumed.end_offsets(partitions))
    finally:
        await consumed.stop()

    renamed = GroupChanged(id=GROUP, observed_at=NOW, attributes={"displayName": "Renamed"})
    async with TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired:
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(GROUP, renamed)])
            latest = await desired.wait_for(lambda d: d.attributes.get("displayName") == "Renamed", timeout=60)
    assert [m.object_guid for m in latest.members] == [guid]  # not a group that lost its member
    assert "rebuilding the state from the start of graph.changes" in (tmp_path / "process.log").read_text()
