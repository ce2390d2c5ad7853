"""Parent groups waiting on nested groups that are not in AD yet: the bookkeeping, without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas import topics
from schemas.config import KafkaSettings
from schemas.desired import DesiredGroup, DesiredMember, anchor_of
from schemas.pending import CreatedGroup, PendingGroup
from schemas.results import ProvisioningResult
from writers.pending import PendingChange, PendingReferences, Waiting
from writers.pending_kafka import PendingKafka
from writers.provision import Convergence

CHILD, OTHER = anchor_of("child"), anchor_of("other")


def parent(group_id: str = "parent", *nested: str, description: str = "v1") -> DesiredGroup:
    return DesiredGroup(
        group_id=group_id,
        anchor=anchor_of(group_id),
        state="present",
        attributes={"cn": group_id, "description": description},
        members=[DesiredMember(type="group", id=a.removeprefix("Group_"), anchor=a) for a in nested],
    )


def resolved_by(references: PendingReferences, *anchors: str) -> list[Waiting]:
    references.resolved(anchors)
    return references.due()


@pytest.fixture
def pending() -> PendingReferences:
    references = PendingReferences()
    references.assign([0])
    references.load(0, {})  # nothing waited in partition 0
    return references


def test_a_parent_waits_on_its_missing_nested_group_until_that_is_created(pending: PendingReferences) -> None:
    state = parent("parent", CHILD)

    change = pending.record(state, 0, {CHILD})

    assert change == PendingChange("parent", 0, PendingGroup(desired=state, missing=[CHILD]))
    assert resolved_by(pending, OTHER) == []
    assert resolved_by(pending, CHILD.upper()) == [Waiting(state, 0, frozenset({CHILD}))]  # AD's case-insensitivity
    assert len(pending) == 1
    # Converged again once the child exists: it waits no more, and ad.pending gets a tombstone.
    assert pending.record(state, 0, set()) == PendingChange("parent", 0, None)
    assert resolved_by(pending, CHILD) == [] and len(pending) == 0


def test_only_a_change_of_the_wait_is_written(pending: PendingReferences) -> None:
    state = parent("parent", CHILD)
    assert pending.record(state, 0, {CHILD}) is not None
    assert pending.record(state, 0, {CHILD}) is None  # a replay: ad.pending already says so

    newer = parent("parent", CHILD, description="v2")
    change = pending.record(newer, 0, {CHILD})

    assert change is not None and change.record is not None and change.record.desired == newer
    assert [w.desired for w in resolved_by(pending, CHILD)] == [newer]  # the latest state is converged


def test_a_parent_that_never_waited_writes_nothing(pending: PendingReferences) -> None:
    assert pending.record(parent("plain"), 0, ()) is None


def test_a_parent_waiting_on_two_groups_waits_on_the_one_still_missing(pending: PendingReferences) -> None:
    state = parent("parent", CHILD, OTHER)
    pending.record(state, 0, {CHILD, OTHER})

    assert [w.desired.group_id for w in resolved_by(pending, CHILD, OTHER)] == ["parent"]  # once
    change = pending.record(state, 0, {OTHER})  # converged again: one of them is in AD now

    assert change is not None and change.record is not None and change.record.missing == [OTHER]
    assert resolved_by(pending, CHILD) == []
    assert [w.missing for w in resolved_by(pending, OTHER)] == [frozenset({OTHER})]


def test_a_parent_stays_due_until_it_is_converged_again(pending: PendingReferences) -> None:
    state = parent("parent", CHILD)
    pending.record(state, 0, {CHILD})
    pending.resolved([CHILD])  # the announcement is consumed, then the DC goes away

    assert [w.desired for w in pending.due()] == [state]
    assert [w.desired for w in pending.due()] == [state]
    pending.record(state, 0, ())
    assert pending.due() == []


def test_a_deleted_parent_stops_waiting(pending: PendingReferences) -> None:
    state = parent("parent", CHILD)
    pending.record(state, 0, {CHILD})
    assert pending.record(state.model_copy(update={"state": "absent"}), 0, ()) == PendingChange("parent", 0, None)


def test_partitions_of_other_writers_are_left_to_them(pending: PendingReferences) -> None:
    assert pending.record(parent("elsewhere", CHILD), 3, {CHILD}) is None
    pending.record(parent("parent", CHILD), 0, {CHILD})

    pending.forget([0])  # revoked

    assert resolved_by(pending, CHILD) == [] and len(pending) == 0
    assert pending.record(parent("parent"), 0, ()) is None


def test_loaded_waits_are_checked_once_against_ad() -> None:
    references = PendingReferences()
    waits = {
        "p1": PendingGroup(desired=parent("p1", CHILD), missing=[CHILD]),
        "p2": PendingGroup(desired=parent("p2", CHILD, OTHER), missing=[CHILD, OTHER]),
    }

    references.assign([1])
    references.load(1, waits)

    assert references.unchecked() == {CHILD, OTHER}
    references.checked(frozenset({CHILD}))  # looked up before p2's other anchor was known
    assert references.unchecked() == {CHILD, OTHER}
    references.checked(frozenset({CHILD, OTHER}))
    assert references.unchecked() == frozenset()
    assert [w.partition for w in resolved_by(references, CHILD)] == [1, 1]


def test_a_wait_superseded_by_an_uncommitted_desired_state_is_not_resumed_but_is_taken_back() -> None:
    references = PendingReferences()
    stale = PendingGroup(desired=parent("p1", CHILD), missing=[CHILD])

    references.assign([2])
    references.load(2, {"p1": stale}, superseded={"p1"})

    assert resolved_by(references, CHILD) == [] and references.unchecked() == frozenset()
    # The newer state, delivered again by the consumer, no longer has the nested group.
    assert references.record(parent("p1"), 2, ()) == PendingChange("p1", 2, None)


def test_when_ad_pending_could_not_be_read_every_convergence_states_its_wait() -> None:
    references = PendingReferences()
    references.assign([0])
    references.load(0, None)

    assert references.record(parent("p1"), 0, ()) == PendingChange("p1", 0, None)
    assert references.record(parent("p1"), 0, ()) == PendingChange("p1", 0, None)
    waiting = references.record(parent("p2", CHILD), 0, {CHILD})
    assert waiting is not None and waiting.record is not None


def test_a_partition_revoked_and_assigned_again_takes_its_waits_from_ad_pending(pending: PendingReferences) -> None:
    pending.record(parent("old", CHILD), 0, {CHILD})

    pending.forget([0])
    pending.assign([0])
    pending.load(0, {"new": PendingGroup(desired=parent("new", OTHER), missing=[OTHER])})

    assert resolved_by(pending, CHILD) == []
    assert [w.desired.group_id for w in resolved_by(pending, OTHER)] == ["new"]


def test_what_is_converged_while_a_partition_loads_is_newer_than_what_is_read() -> None:
    references = PendingReferences()
    references.assign([0])
    # Converged before ad.pending has been read: the wait state is unknown, so both are written.
    assert references.record(parent("p1"), 0, ()) == PendingChange("p1", 0, None)
    assert references.record(parent("p2", OTHER), 0, {OTHER}) is not None

    read = {  # the read may or may not see those writes: older records must not win
        "p1": PendingGroup(desired=parent("p1", CHILD), missing=[CHILD]),
        "p3": PendingGroup(desired=parent("p3", CHILD), missing=[CHILD]),
    }
    references.load(0, read)

    assert [w.desired.group_id for w in resolved_by(references, CHILD, OTHER)] == ["p2", "p3"]
    assert references.record(parent("p2"), 0, ()) == PendingChange("p2", 0, None)
    assert references.record(parent("p1"), 0, ()) is None  # its tombstone was written already


def test_a_load_for_a_partition_revoked_meanwhile_is_ignored() -> None:
    references = PendingReferences()
    references.assign([0])
    references.forget([0])

    references.load(0, {"p1": PendingGroup(desired=parent("p1", CHILD), missing=[CHILD])})

    assert len(references) == 0 and references.record(parent("p1"), 0, ()) is None


class RecordingProducer:
    """Stands in for AIOKafkaProducer.send: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes, partition: int | None = None
    ) -> asyncio.Future:
        self.sent.append({"topic": topic, "value": value, "key": key, "partition": partition})
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def convergence(state: DesiredGroup, missing: set[str], created: str | None = None) -> Convergence:
    result = ProvisioningResult(group_id=state.group_id, anchor=state.anchor, action="create", status="success")
    return Convergence(result, frozenset(missing), created)


async def test_settling_writes_the_wait_to_the_parents_partition_and_announces_a_creation() -> None:
    producer = RecordingProducer()
    edge = PendingKafka(KafkaSettings(), producer)  # type: ignore[arg-type]
    edge.references.assign([2])
    edge.references.load(2, {})
    state = parent("parent", CHILD)

    futures = await edge.settle(state, 2, convergence(state, {CHILD}, created="CN=parent,OU=x"))
    await asyncio.gather(*futures)
    await edge.settle(state, 2, convergence(state, set()))

    wait, announcement, tombstone = producer.sent
    assert (wait["topic"], wait["key"], wait["partition"]) == (topics.AD_PENDING, b"parent", 2)
    assert topics.decode(PendingGroup, wait["value"]) == PendingGroup(desired=state, missing=[CHILD])
    assert (announcement["topic"], announcement["key"]) == (topics.AD_CREATED, b"parent")
    assert topics.decode(CreatedGroup, announcement["value"]) == CreatedGroup(
        group_id="parent", anchor=state.anchor, dn="CN=parent,OU=x"
    )
    assert (tombstone["topic"], tombstone["value"], tombstone["partition"]) == (topics.AD_PENDING, None, 2)
