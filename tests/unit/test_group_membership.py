"""Each stage's consumer joins its group as a static member when kafka.group_instance_id is set,
and still leaves the group on a clean stop (aiokafka would not, for a static member)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime import kafka
from schemas.config import KafkaSettings


class FakeCoordinator:
    def __init__(self, instance_id: str | None) -> None:
        self._group_instance_id = instance_id
        self.left_as: list[str | None] = []

    async def close(self) -> None:
        # aiokafka's close(): LeaveGroup only when the member has no instance id.
        self.left_as.append(self._group_instance_id)


class FakeMember:
    def __init__(self, coordinator: FakeCoordinator | None) -> None:
        self._coordinator = coordinator
        self.stopped = False

    async def stop(self) -> None:
        if self._coordinator is not None:
            await self._coordinator.close()
        self.stopped = True


async def test_a_stage_consumer_is_a_static_member_only_with_an_instance_id() -> None:
    static = kafka.group_member(KafkaSettings(group_instance_id="writer-0"), "ad.desired", group_id="e2ad-writers")
    dynamic = kafka.group_member(KafkaSettings(), "ad.desired", group_id="e2ad-writers")
    assert static._group_instance_id == "writer-0"
    assert dynamic._group_instance_id is None
    assert static._group_id == dynamic._group_id == "e2ad-writers"


async def test_plain_consumers_never_get_the_instance_id() -> None:
    # Readers outside the group and committers with assigned partitions (e2ad replay, ingest's
    # control reader) are no members: an instance id there would fence the running stage.
    reader = kafka.consumer(KafkaSettings(group_instance_id="writer-0"), group_id="e2ad-writers")
    assert reader._group_instance_id is None


def test_the_processors_get_the_instance_id_through_faust() -> None:
    assert kafka.faust_options(KafkaSettings(group_instance_id="p-1"))["consumer_group_instance_id"] == "p-1"
    assert kafka.faust_options(KafkaSettings())["consumer_group_instance_id"] is None


async def test_leave_and_stop_makes_a_static_member_leave() -> None:
    coordinator = FakeCoordinator("writer-0")
    member = FakeMember(coordinator)
    await kafka.leave_and_stop(member)  # type: ignore[arg-type]
    assert member.stopped and coordinator.left_as == [None]  # closed as a member that leaves


async def test_leave_and_stop_stops_a_consumer_that_never_started() -> None:
    member = FakeMember(None)
    await kafka.leave_and_stop(member)  # type: ignore[arg-type]
    assert member.stopped


@pytest.mark.parametrize("bad", ["", "writer 0", "writer/0", "w" * 250])
def test_an_instance_id_kafka_would_refuse_is_refused_at_load(bad: str) -> None:
    with pytest.raises(ValidationError, match="group_instance_id"):
        KafkaSettings(group_instance_id=bad)
