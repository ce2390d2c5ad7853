"""The shared records: what they accept, what they keep, and how they name what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.changes import CHANGE_RECORD, GroupChanged, MemberRef, UserRemoved
from schemas.control import ControlCommand
from schemas.desired import DesiredGroup, DesiredMember, anchor_of
from schemas.notifications import ChangeNotificationCollection, ChangeType, LifecycleEventType

DELIVERY = b"""{"value": [
  {"subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
   "subscriptionExpirationDateTime": "2016-11-20T18:23:45.9356913Z",
   "clientState": "secret", "changeType": "updated", "resource": "Groups/g1",
   "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
   "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": "Groups/g1", "id": "g1",
                    "organizationId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"}},
  {"subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "clientState": "secret",
   "lifecycleEvent": "someFutureEvent", "somethingNew": 1}
]}"""


def test_a_graph_delivery_parses_and_keeps_what_it_does_not_know() -> None:
    change, lifecycle = ChangeNotificationCollection.model_validate_json(DELIVERY).value
    assert change.change_type == ChangeType.updated
    assert change.subscription_expiration_date_time == dt.datetime(2016, 11, 20, 18, 23, 45, 935691, tzinfo=dt.UTC)
    assert change.resource_data is not None and change.resource_data.odata_type == "#Microsoft.Graph.Group"
    assert change.resource_data.model_extra == {"organizationId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"}
    # An event type Graph adds later must not fail the whole batch.
    assert lifecycle.lifecycle_event == "someFutureEvent" and lifecycle.is_lifecycle
    assert lifecycle.model_extra == {"somethingNew": 1}
    assert LifecycleEventType("reauthorizationRequired") is LifecycleEventType.reauthorization_required


@pytest.mark.parametrize(
    ("odata_type", "kind"),
    [("#microsoft.graph.user", "user"), ("#microsoft.graph.group", "group"), ("#microsoft.graph.device", "other")],
)
def test_member_type_comes_from_the_odata_type(odata_type: str, kind: str) -> None:
    assert MemberRef.from_odata({"@odata.type": odata_type, "id": "x"}) == MemberRef(id="x", type=kind)


def test_change_records_round_trip_through_the_topic_codec() -> None:
    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    records = [
        GroupChanged(
            id="g1", observed_at=now, attributes={"displayName": "A"}, members_added=[MemberRef(id="u", type="user")]
        ),
        UserRemoved(id="u", observed_at=now, reason="deleted"),
    ]
    for record in records:
        assert CHANGE_RECORD.validate_json(topics.encode(record)) == record


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"kind": "group.exploded", "id": "g"}', "does not match any of the expected tags"),
        (
            b'{"kind": "group.removed", "id": "g", "observed_at": "2026-11-26T00:00:00Z", "reason": "gone"}',
            "`group.removed`.reason",
        ),
        (b'{"kind": "user.changed", "observed_at": "2026-11-26T00:00:00Z"}', "`user.changed`.id"),
    ],
)
def test_a_bad_change_record_names_the_offending_field(payload: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CHANGE_RECORD.validate_json(payload)
    assert field in str(caught.value)


def test_desired_group_round_trips() -> None:
    desired = DesiredGroup(
        group_id="g1",
        anchor=anchor_of("g1"),
        state="present",
        container="OU=Groups,DC=e2ad,DC=test",
        attributes={"cn": "A_1", "description": None, "groupType": -2147483640},
        members=[DesiredMember(type="user", id="u", object_guid="0b0e1c52-0000-4000-8000-0000000000a1")],
    )
    assert topics.decode(DesiredGroup, topics.encode(desired)) == desired
    assert desired.anchor == "Group_g1"


def test_only_clear_quarantine_and_restart_clear_a_writers_quarantine() -> None:
    assert ControlCommand(command="clear-quarantine").addresses("w1")
    assert ControlCommand(command="clear-quarantine", writer="w1").addresses("w1")
    assert not ControlCommand(command="clear-quarantine", writer="w2").addresses("w1")
    assert ControlCommand(command="restart").addresses("w1")  # Restart sync clears every quarantine
    assert not ControlCommand(command="approve-deletes").addresses("w1")
    assert not ControlCommand(command="reject-deletes", writer="w1").addresses("w1")
    first, second = ControlCommand(command="restart"), ControlCommand(command="restart")
    assert first.command_id != second.command_id  # each command acts once, by its id
