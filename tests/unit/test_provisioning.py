"""The processors' core on plain dicts: scope, default mappings, member resolution, removal."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from processors.mapping import GroupMapper
from processors.provisioning import ProvisioningState
from processors.scoping import Scope
from schemas.changes import GroupChanged, GroupRemoved, MemberRef, UserChanged, UserRemoved
from schemas.config import ProvisioningSettings, ScopeClause, ScopeSettings
from schemas.desired import UNIVERSAL_SECURITY_GROUP
from schemas.results import ProvisioningResult

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
GROUP = "0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6"
NESTED = "0f6a3b5c-2222-4000-8000-000000000002"
CONTAINER = "OU=Groups,DC=e2ad,DC=test"
SECURITY = {"securityEnabled": True, "mailEnabled": False, "onPremisesSyncEnabled": None, "groupTypes": []}


def state(
    mappings: object = None, scope: ScopeSettings | None = None, on_premises_users: bool = True, **settings: object
) -> ProvisioningState:
    return ProvisioningState(
        ProvisioningSettings(target_container=CONTAINER, **settings),  # type: ignore[arg-type]
        GroupMapper(mappings or {}, {}, CONTAINER),  # type: ignore[arg-type]
        Scope(scope or ScopeSettings()),
        users={},
        groups={},
        parents={},
        on_premises_users=on_premises_users,
    )


def group_changed(group_id: str = GROUP, members: list[MemberRef] | None = None, **attributes: object) -> GroupChanged:
    attrs = {**SECURITY, "displayName": "Sales", "description": "  Sales team  ", **attributes}
    return GroupChanged(id=group_id, observed_at=NOW, attributes=attrs, members_added=members or [])


def user(user_id: str, guid: str | None) -> UserChanged:
    return UserChanged(id=user_id, observed_at=NOW, attributes={"onPremisesObjectIdentifier": guid})


def test_security_group_gets_cloud_sync_default_mappings() -> None:
    s = state()
    [desired] = s.apply(group_changed())
    assert desired.state == "present"
    assert desired.container == CONTAINER
    assert desired.attributes == {
        "cn": "Sales_a1b2c3d4e5f6",
        "description": "Sales team",
        "displayName": "Sales",
        "msDS-ExternalDirectoryObjectId": f"Group_{GROUP}",
        "adminDescription": f"Group_{GROUP}",
        "groupType": UNIVERSAL_SECURITY_GROUP,
    }
    assert desired.create_only == {"sAMAccountName": "Group_a1b2c3d4e5f6"}
    assert desired.source_changed_at == NOW


def test_cn_is_at_most_64_characters_and_empty_description_flows_null() -> None:
    [desired] = state().apply(group_changed(displayName="  " + "x" * 80, description="   "))
    assert desired.attributes["cn"] == "x" * 51 + "_a1b2c3d4e5f6"
    assert desired.attributes["description"] is None


@pytest.mark.parametrize(
    "attributes",
    [
        {"mailEnabled": True},
        {"securityEnabled": False},
        {"onPremisesSyncEnabled": True},
        {"groupTypes": ["Unified"], "mailEnabled": True},
    ],
)
def test_groups_outside_the_security_clause_are_never_provisioned(attributes: dict[str, object]) -> None:
    assert state().apply(group_changed(**attributes)) == []


def test_members_resolve_to_ad_guids_and_cloud_only_users_are_skipped() -> None:
    s = state()
    s.apply(user("u1", "3c598d5d-0000-4000-8000-000000000001"))
    s.apply(user("u2", None))
    [desired] = s.apply(
        group_changed(
            members=[MemberRef(id="u1", type="user"), MemberRef(id="u2", type="user"), MemberRef(id="d1", type="other")]
        )
    )
    assert [(m.id, m.object_guid) for m in desired.members] == [("u1", "3c598d5d-0000-4000-8000-000000000001")]
    assert {s.id: s.reason for s in desired.skipped_members} == {
        "u2": "cloud-only user (no onPremisesObjectIdentifier)",
        "d1": "unsupported member type other",
    }


def test_without_on_premises_users_user_members_are_skipped_and_nested_groups_still_written() -> None:
    s = state(on_premises_users=False)
    s.apply(user("u1", "3c598d5d-0000-4000-8000-000000000001"))
    s.apply(group_changed(NESTED, displayName="Inner"))
    [desired] = s.apply(group_changed(members=[MemberRef(id="u1", type="user"), MemberRef(id=NESTED, type="group")]))
    assert [(m.type, m.id) for m in desired.members] == [("group", NESTED)]
    assert [(m.id, m.reason) for m in desired.skipped_members] == [("u1", "membership.on_premises_users is off")]


def test_an_invalid_sam_account_name_fails_that_group_alone_naming_it() -> None:
    s = state([{"target": "sAMAccountName", "type": "direct", "source": "mailNickname"}])
    [failure] = s.apply(group_changed(mailNickname="sales:emea"))
    [other] = s.apply(group_changed(NESTED, mailNickname="sales"))
    assert isinstance(failure, ProvisioningResult)
    assert (failure.group_id, failure.status) == (GROUP, "failure")
    assert (failure.error_message or "").startswith("sAMAccountName: sAMAccountName 'sales:emea' contains ':'")
    assert (other.group_id, other.create_only) == (NESTED, {"sAMAccountName": "sales"})


def test_a_user_arriving_later_re_evaluates_the_groups_containing_it() -> None:
    s = state()
    [before] = s.apply(group_changed(members=[MemberRef(id="u1", type="user")]))
    assert before.members == []
    [after] = s.apply(user("u1", "3c598d5d-0000-4000-8000-000000000001"))
    assert after.group_id == GROUP
    assert [m.object_guid for m in after.members] == ["3c598d5d-0000-4000-8000-000000000001"]
    [gone] = s.apply(UserRemoved(id="u1", observed_at=NOW, reason="deleted"))
    assert gone.members == []


def test_unchanged_desired_state_is_not_published_again() -> None:
    s = state()
    assert len(s.apply(group_changed())) == 1
    assert s.apply(group_changed()) == []


def test_partial_changes_merge_and_member_deltas_apply() -> None:
    s = state()
    s.apply(user("u1", "3c598d5d-0000-4000-8000-000000000001"))
    s.apply(user("u2", "3c598d5d-0000-4000-8000-000000000002"))
    s.apply(group_changed(members=[MemberRef(id="u1", type="user"), MemberRef(id="u2", type="user")]))
    change = GroupChanged(id=GROUP, observed_at=NOW, members_removed=[MemberRef(id="u1", type="user")])
    [desired] = s.apply(change)
    assert desired.attributes["displayName"] == "Sales"  # kept from before
    assert [m.id for m in desired.members] == ["u2"]
    assert s.parents == {"u2": [GROUP]}


def test_full_round_replaces_the_membership() -> None:
    s = state()
    s.apply(group_changed(members=[MemberRef(id="u1", type="user"), MemberRef(id="u2", type="user")]))
    full = group_changed(members=[MemberRef(id="u2", type="user")])
    full = full.model_copy(update={"members_complete": True, "full_round": True})
    s.apply(full)
    assert s.groups[GROUP]["members"] == {"u2": "user"}
    assert "u1" not in s.parents


def test_nested_group_follows_its_scope() -> None:
    s = state()
    s.apply(group_changed(NESTED, displayName="Inner", mailEnabled=True))
    [outer] = s.apply(group_changed(members=[MemberRef(id=NESTED, type="group")]))
    assert outer.members == [] and outer.skipped_members[0].reason == (
        "nested group not in scope: mail-enabled groups are not provisioned"
    )
    published = s.apply(group_changed(NESTED, displayName="Inner", mailEnabled=False))
    by_id = {d.group_id: d for d in published}
    assert set(by_id) == {NESTED, GROUP}
    assert [(m.type, m.anchor) for m in by_id[GROUP].members] == [("group", f"Group_{NESTED}")]


SALES_OR_OPS = ScopeSettings(
    filters=[[{"attribute": "displayName", "operator": "REGEX MATCH", "value": "^(Sales|Ops)"}]]
)


def test_nested_group_excluded_by_a_filter_is_skipped_until_an_attribute_change_brings_it_in() -> None:
    s = state(scope=SALES_OR_OPS)
    s.apply(group_changed(NESTED, displayName="Inner"))
    [outer] = s.apply(group_changed(displayName="Sales", members=[MemberRef(id=NESTED, type="group")]))
    assert outer.state == "present" and outer.members == []
    assert [(m.id, m.reason) for m in outer.skipped_members] == [
        (
            NESTED,
            "nested group not in scope: scoping filter: no filter matched"
            ' (filter 1: displayName REGEX MATCH "^(Sales|Ops)" is false)',
        )
    ]
    # The nested group's rename brings it into the scope: the parent's next desired state references it.
    published = s.apply(group_changed(NESTED, displayName="Ops Inner"))
    by_id = {d.group_id: d for d in published}
    assert set(by_id) == {NESTED, GROUP} and by_id[NESTED].state == "present"
    assert [(m.type, m.id, m.anchor) for m in by_id[GROUP].members] == [("group", NESTED, f"Group_{NESTED}")]
    assert by_id[GROUP].skipped_members == []


def test_a_group_a_filter_no_longer_matches_leaves_the_scope_with_the_reason() -> None:
    s = state(scope=SALES_OR_OPS)
    [present] = s.apply(group_changed(displayName="Sales"))
    assert present.state == "present"
    [desired] = s.apply(group_changed(displayName="HR"))
    assert (desired.state, desired.reason) == (
        "absent",
        'out of scope: scoping filter: no filter matched (filter 1: displayName REGEX MATCH "^(Sales|Ops)" is false)',
    )


def test_a_filter_on_an_attribute_the_group_was_not_read_with_waits_for_it_before_deleting() -> None:
    extension = "extension_0123456789abcdef0123456789abcdef_WritebackEnabled"
    writeback = ScopeSettings(filters=[[ScopeClause(attribute=extension, operator="IS TRUE")]])
    groups: dict[str, Any] = {}
    before = state()
    before.groups = groups
    [created] = before.apply(group_changed())
    assert created.state == "present"

    # The new configuration: the group's state has no value for the extension, not even null.
    after = state(scope=writeback)
    after.groups = groups
    assert after.reevaluate(NOW) == []
    # The full round of the new $select reads it (null when Graph has none): then it leaves the scope.
    [gone] = after.apply(group_changed(**{extension: None}))
    assert gone.state == "absent" and gone.reason is not None and extension in gone.reason


def test_selected_mode_provisions_the_listed_groups_only() -> None:
    s = state(scope=ScopeSettings(mode="selected", groups=[GROUP.upper()]))
    assert s.apply(group_changed(NESTED)) == []  # never provisioned: nothing to publish
    [desired] = s.apply(group_changed(members=[MemberRef(id=NESTED, type="group")]))
    assert desired.group_id == GROUP and desired.state == "present"
    assert [m.reason for m in desired.skipped_members] == [
        "nested group not in scope: not selected (scope.mode selected)"
    ]


@pytest.mark.parametrize(("removal", "reason"), [("deleted", "deleted in Entra"), ("changed", "soft-deleted in Entra")])
def test_removed_group_becomes_absent(removal: str, reason: str) -> None:
    s = state()
    s.apply(group_changed())
    [desired] = s.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason=removal))  # type: ignore[arg-type]
    assert (desired.state, desired.reason) == ("absent", reason)
    [restored] = s.apply(group_changed())
    assert restored.state == "present"


def test_leaving_the_scope_deletes_unless_configured_to_keep() -> None:
    s = state()
    s.apply(group_changed())
    [desired] = s.apply(group_changed(mailEnabled=True))
    assert (desired.state, desired.reason) == ("absent", "out of scope: mail-enabled groups are not provisioned")

    keep = state(on_soft_delete_or_out_of_scope="keep")
    keep.apply(group_changed())
    assert keep.apply(group_changed(mailEnabled=True)) == []
    assert keep.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason="changed")) == []
    [deleted] = keep.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason="deleted"))
    assert deleted.state == "absent"


def test_a_group_whose_delete_was_kept_in_ad_is_deleted_when_it_is_deleted_in_entra() -> None:
    # Left the scope; the deletion guard staged the delete and an operator rejected it: the AD group stays.
    s = state()
    s.apply(group_changed())
    [out_of_scope] = s.apply(group_changed(mailEnabled=True))
    assert out_of_scope.state == "absent"
    s.kept(GROUP)
    assert s.apply(group_changed(mailEnabled=True, description="still mail-enabled")) == []  # the reject stands
    [deleted] = s.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason="deleted"))
    assert (deleted.state, deleted.reason) == ("absent", "deleted in Entra")


def test_a_kept_group_back_in_scope_is_published() -> None:
    s = state()
    s.apply(group_changed())
    s.apply(group_changed(mailEnabled=True))
    s.kept(GROUP)
    [back] = s.apply(group_changed())
    assert back.state == "present"
    s.kept("never-seen")  # nothing to keep
    assert "never-seen" not in s.groups


def test_removal_of_a_never_provisioned_group_publishes_nothing() -> None:
    s = state()
    s.apply(group_changed(mailEnabled=True))
    assert s.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason="deleted")) == []


def test_configured_mappings_route_the_container_and_a_failing_one_is_logged_not_published() -> None:
    s = state(
        {
            "parentDistinguishedName": 'Switch([displayName], "OU=Other,DC=e2ad,DC=test", '
            '"Sales", "OU=Sales,DC=e2ad,DC=test")',
            "description": 'IIF([displayName]="Broken", Error("no description for " & [displayName]), [description])',
        }
    )
    [sales] = s.apply(group_changed())
    assert sales.container == "OU=Sales,DC=e2ad,DC=test"
    [failure] = s.apply(group_changed(displayName="Broken"))
    assert isinstance(failure, ProvisioningResult)
    assert (failure.status, failure.group_id) == ("failure", GROUP)
    assert failure.error_message is not None and failure.error_message.startswith(
        "description: no description for Broken"
    )


def test_a_mapping_set_without_container_or_with_a_fixed_attribute_is_refused() -> None:
    with pytest.raises(ValueError, match="parentDistinguishedName: required"):
        GroupMapper({}, {}, None)
    with pytest.raises(ValueError, match=r"mappings\[0\] \(msDS-ExternalDirectoryObjectId\): cannot be mapped: fixed"):
        GroupMapper({"msDS-ExternalDirectoryObjectId": '"x"'}, {}, CONTAINER)


def soft_deleted_with_u1_and_u2(round_from: str) -> ProvisioningState:
    """GROUP with two synced members, then soft-deleted in the round that started from round_from."""
    s = state()
    s.apply(user("u1", "0b0e1c52-0000-4000-8000-0000000000a1"))
    s.apply(user("u2", "0b0e1c52-0000-4000-8000-0000000000a2"))
    s.apply(group_changed(members=[MemberRef(id="u1", type="user"), MemberRef(id="u2", type="user")]))
    s.apply(GroupRemoved(id=GROUP, observed_at=NOW, reason="changed", round_from=round_from))
    return s


def test_a_group_restored_after_a_round_that_saw_its_delete_has_the_membership_the_restore_lists() -> None:
    s = soft_deleted_with_u1_and_u2(round_from="token-1")

    # The next round, from a token taken while the group was deleted: u2 did not come back with it.
    restored = GroupChanged(
        id=GROUP, observed_at=NOW, attributes=SECURITY, members_added=[MemberRef(id="u1", type="user")],
        round_from="token-2",
    )  # fmt: skip
    [desired] = s.apply(restored)

    assert [m.id for m in desired.members] == ["u1"]


def test_the_same_round_read_again_after_a_crash_is_a_difference_like_any_other() -> None:
    s = soft_deleted_with_u1_and_u2(round_from="token-1")

    # ingest died before saving its cursor and reads from token-1 again: the group is back, and only
    # what changed since token-1 (before the delete) is listed.
    again = GroupChanged(
        id=GROUP, observed_at=NOW, attributes=SECURITY, members_added=[MemberRef(id="u3", type="user")],
        round_from="token-1",
    )  # fmt: skip
    s.apply(user("u3", "0b0e1c52-0000-4000-8000-0000000000a3"))
    [desired] = s.apply(again)

    assert [m.id for m in desired.members] == ["u1", "u2", "u3"]
