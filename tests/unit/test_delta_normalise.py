"""The pure core of the delta reader: merging a round's items and turning them into change records."""

from __future__ import annotations

import datetime as dt

from kiota_abstractions.api_error import APIError

from ingest.delta import (
    GROUP_SELECT,
    MEMBERS_DELTA,
    USER_SELECT,
    DeltaRound,
    continues_from,
    group_select,
    merge_items,
    needs_full_round,
    normalise,
)
from ingest.round_spool import RoundSpool
from schemas.changes import DeltaCursor, GroupChanged, GroupRemoved, MemberRef, UserChanged, UserRemoved
from tests.active import WRITEBACK_ENABLED, active_configuration

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"


def member(member_id: str, odata_type: str = USER, *, removed: bool = False) -> dict[str, object]:
    entry: dict[str, object] = {"@odata.type": odata_type, "id": member_id}
    if removed:
        entry["@removed"] = {"reason": "deleted"}
    return entry


def test_members_split_across_items_are_merged_in_order_and_properties_kept() -> None:
    items = [
        {"id": "g1", "displayName": "Sales", "members@delta": [member("u1"), member("u2")]},
        {"id": "g2", "displayName": "Ops"},
        {"id": "g1", "members@delta": [member("u3"), member("g9", GROUP)]},
    ]

    merged = merge_items(items)

    assert [m["id"] for m in merged] == ["g1", "g2"]
    assert merged[0]["displayName"] == "Sales"
    assert [e["id"] for e in merged[0]["members@delta"]] == ["u1", "u2", "u3", "g9"]


def test_properties_after_removed_mean_the_object_came_back() -> None:
    merged = merge_items([{"id": "g1", "@removed": {"reason": "changed"}}, {"id": "g1", "displayName": "Back"}])
    assert "@removed" not in merged[0]
    assert merged[0]["displayName"] == "Back"


def test_full_round_group_carries_whole_membership_as_complete() -> None:
    items = [{"id": "g1", "displayName": "Sales", "members@delta": [member("u1"), member("g2", GROUP)]}]

    (record,) = normalise("groups", items, full_round=True, observed_at=NOW)

    assert isinstance(record, GroupChanged)
    assert record.full_round and record.members_complete
    assert record.members_added == [MemberRef(id="u1", type="user"), MemberRef(id="g2", type="group")]
    assert record.attributes == {"displayName": "Sales"}
    assert record.observed_at == NOW


def test_empty_group_in_full_round_is_complete_with_no_members() -> None:
    (record,) = normalise("groups", [{"id": "g1", "displayName": "Empty"}], full_round=True, observed_at=NOW)
    assert isinstance(record, GroupChanged)
    assert record.members_complete and record.members_added == []


def test_token_round_members_only_change_has_no_attributes_and_nets_per_member() -> None:
    items = [
        {
            "id": "g1",
            "members@delta": [member("u1"), member("u2", removed=True), member("u1", removed=True), member("u3")],
        }
    ]

    (record,) = normalise("groups", items, full_round=False, observed_at=NOW)

    assert isinstance(record, GroupChanged)
    assert record.attributes == {}
    assert not record.members_complete and not record.full_round
    assert [m.id for m in record.members_added] == ["u3"]
    assert sorted(m.id for m in record.members_removed) == ["u1", "u2"]


def test_removed_groups_keep_graphs_reason() -> None:
    items = [{"id": "soft", "@removed": {"reason": "changed"}}, {"id": "gone", "@removed": {"reason": "deleted"}}]

    records = normalise("groups", items, full_round=False, observed_at=NOW)

    assert [(type(r), r.id, r.reason) for r in records if isinstance(r, GroupRemoved)] == [
        (GroupRemoved, "soft", "changed"),
        (GroupRemoved, "gone", "deleted"),
    ]


def test_unknown_removed_reason_is_taken_as_restorable() -> None:
    (record,) = normalise("users", [{"id": "u1", "@removed": {"reason": "odd"}}], full_round=False, observed_at=NOW)
    assert isinstance(record, UserRemoved) and record.reason == "changed"


def test_user_attributes_exclude_annotations() -> None:
    items = [{"id": "u1", "@odata.type": USER, "displayName": "Ada", "onPremisesObjectIdentifier": "guid-1"}]

    (record,) = normalise("users", items, full_round=False, observed_at=NOW)

    assert isinstance(record, UserChanged)
    assert record.attributes == {"displayName": "Ada", "onPremisesObjectIdentifier": "guid-1"}


def test_expired_tokens_need_a_full_round_other_errors_do_not() -> None:
    assert needs_full_round(APIError("gone", 410))
    assert not needs_full_round(APIError("throttled", 429))
    assert not needs_full_round(ValueError("x"))


def test_every_record_names_its_round_by_a_digest_of_the_token_not_the_token() -> None:
    link = "https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=secret-token"
    delta_round = DeltaRound("groups", RoundSpool(), "next", full_round=False, started_from=link)
    items = [{"id": "g1", "displayName": "Sales"}, {"id": "g2", "@removed": {"reason": "changed"}}]

    records = normalise("groups", items, full_round=False, observed_at=NOW, round_from=delta_round.round_from)

    assert {r.round_from for r in records} == {delta_round.round_from}
    assert delta_round.round_from and "secret-token" not in delta_round.round_from
    assert DeltaRound("groups", RoundSpool(), "next", full_round=True, started_from=None).round_from is None


def test_a_directory_extension_the_round_selected_reaches_the_group_change() -> None:
    items = [{"id": "g1", "displayName": "Sales", WRITEBACK_ENABLED: True}]

    (record,) = normalise("groups", items, full_round=False, observed_at=NOW)

    assert isinstance(record, GroupChanged)
    assert record.attributes == {"displayName": "Sales", WRITEBACK_ENABLED: True}


def test_a_full_round_item_lacking_a_selected_attribute_has_it_as_null_a_token_round_item_does_not() -> None:
    items = [{"id": "g1", "displayName": "Sales"}]
    selected = ["id", "displayName", "description", WRITEBACK_ENABLED, "members"]

    (full,) = normalise("groups", items, full_round=True, observed_at=NOW, selected=selected)
    (changed,) = normalise("groups", items, full_round=False, observed_at=NOW, selected=selected)

    assert isinstance(full, GroupChanged) and isinstance(changed, GroupChanged)
    assert full.attributes == {"displayName": "Sales", "description": None, WRITEBACK_ENABLED: None}
    assert changed.attributes == {"displayName": "Sales"}  # absent there means unchanged


def test_the_group_select_adds_the_configurations_attributes_once_each_after_ingests_own() -> None:
    active = active_configuration(graph_group_attributes=[WRITEBACK_ENABLED, "displayName", "classification"])

    assert group_select(None) == GROUP_SELECT
    assert group_select(active) == [*GROUP_SELECT, WRITEBACK_ENABLED, "classification"]
    assert group_select(active_configuration(2, "deleted")) == GROUP_SELECT


def cursor(resource: str, select: list[str] | None) -> DeltaCursor:
    return DeltaCursor(
        resource=resource, delta_link=f"https://graph/{resource}/delta?$deltatoken=t", saved_at=NOW, select=select
    )


def test_a_cursor_is_continued_only_with_the_set_of_attributes_it_was_taken_with() -> None:
    wider = [*GROUP_SELECT, WRITEBACK_ENABLED]
    taken = cursor("groups", wider)

    assert continues_from("groups", taken, list(reversed(wider))) == taken.delta_link  # the order does not matter
    assert continues_from("groups", taken, GROUP_SELECT) is None  # an attribute dropped: a full round
    assert continues_from("groups", cursor("groups", GROUP_SELECT), wider) is None  # one added: a full round
    assert continues_from("groups", None, GROUP_SELECT) is None


def test_a_cursor_saved_before_the_select_was_stored_counts_as_ingests_own_select() -> None:
    old_groups, old_users = cursor("groups", None), cursor("users", None)

    assert continues_from("groups", old_groups, GROUP_SELECT) == old_groups.delta_link
    assert continues_from("groups", old_groups, [*GROUP_SELECT, WRITEBACK_ENABLED]) is None
    assert continues_from("users", old_users, USER_SELECT) == old_users.delta_link


def test_a_spooled_round_gives_each_object_merged_in_the_order_first_seen_a_batch_at_a_time() -> None:
    spool = RoundSpool()
    spool.add([{"id": "g2", "displayName": "Two", MEMBERS_DELTA: [{"id": "u1"}]}, {"id": "g1", "displayName": "One"}])
    spool.add([{"id": "g3", "displayName": "Three"}, {"id": "g2", MEMBERS_DELTA: [{"id": "u2"}, {"id": "u3"}]}])
    spool.add([{"id": "g1", "@removed": {"reason": "changed"}}])
    delta_round = DeltaRound("groups", spool, "next", full_round=True, started_from=None)

    batches = list(delta_round.merged(2))

    assert [[item["id"] for item in batch] for batch in batches] == [["g2", "g1"], ["g3"]]
    two, one = batches[0]
    assert [m["id"] for m in two[MEMBERS_DELTA]] == ["u1", "u2", "u3"] and two["displayName"] == "Two"
    assert one["@removed"] == {"reason": "changed"}
    assert spool.count == 5
    spool.close()
