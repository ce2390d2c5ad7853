"""The writer's lean write path on the real Samba DC: one add per new group, one modify per small
update, and the fallbacks to the step-by-step path when AD rejects either.

The connection is the real one, wrapped only to record each operation and AD's answer to it.
"""

from __future__ import annotations

import uuid

import ldap3
import pytest

from schemas.desired import DesiredGroup
from tests.integration.helpers import ANCHOR, desired, object_guid, user_members
from tests.integration.wiretap import Wiretap
from writers.directory import Applied, Directory
from writers.provision import converge
from writers.reconcile import plan

pytestmark = pytest.mark.integration

NO_SUCH_OBJECT, ENTRY_ALREADY_EXISTS = 32, 68


@pytest.fixture
def users(ad_admin, test_ou: str) -> list[uuid.UUID]:
    """objectGUIDs of four users in the test OU."""
    guids = []
    for i in range(4):
        user_dn = f"CN=user{i},{test_ou}"
        assert ad_admin.add(user_dn, "user", {"sAMAccountName": f"u{uuid.uuid4().hex[:14]}"}), ad_admin.result
        guids.append(object_guid(ad_admin, user_dn))
    return guids


def changed(state: DesiredGroup, members: list[uuid.UUID], description: str) -> DesiredGroup:
    return state.model_copy(
        update={
            "attributes": {**state.attributes, "description": description},
            "members": user_members(members),
        }
    )


def read(ad_admin, test_ou: str, anchor: str) -> tuple[str, set[uuid.UUID]]:
    """The description and the members' objectGUIDs, read independently of the writer (through memberOf)."""
    ad_admin.search(test_ou, f"({ANCHOR}={anchor})", attributes=["description"])
    [group] = ad_admin.response
    ad_admin.search(
        test_ou, f"(memberOf={ldap3.utils.conv.escape_filter_chars(group['dn'])})", attributes=["objectGUID"]
    )
    members = {uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]) for entry in ad_admin.response}
    return group["attributes"]["description"][0], members


def test_a_common_create_is_one_add_and_a_small_update_one_modify(
    directory: Directory, wiretap: Wiretap, ad_admin, test_ou: str, users: list[uuid.UUID]
) -> None:
    state = desired(test_ou, name="Fast", members=users[:3])

    created = converge(directory, state, default_container=None, writer="test").result

    assert (created.action, created.status, created.members_added) == ("create", "success", 3)
    assert wiretap.writes() == [("add", 0)]
    assert read(ad_admin, test_ou, state.anchor) == ("Fast team", set(users[:3]))

    wiretap.clear()
    update = changed(state, [users[0], users[1], users[3]], "new team")
    updated = converge(directory, update, default_container=None, writer="test").result

    assert (updated.action, updated.status, updated.members_added, updated.members_removed) == (
        "update",
        "success",
        1,
        1,
    )
    # find_group's read, then one modify with the description and both member operations.
    assert wiretap.writes() == [("modify", 0)] and len(wiretap.searches()) == 1
    assert read(ad_admin, test_ou, state.anchor) == ("new team", {users[0], users[1], users[3]})


def test_a_create_with_a_member_missing_from_ad_falls_back_and_warns(
    directory: Directory, wiretap: Wiretap, ad_admin, test_ou: str, users: list[uuid.UUID]
) -> None:
    ghost = uuid.uuid4()
    state = desired(test_ou, name="Fast", members=[users[0], ghost, *users[1:]])

    result = converge(directory, state, default_container=None, writer="test").result

    assert (result.action, result.status, result.members_added) == ("create", "warning", 4)
    assert [w for w in result.warnings if str(ghost) in w] == result.warnings and len(result.warnings) == 1
    assert read(ad_admin, test_ou, state.anchor) == ("Fast team", set(users))
    # The add with the members is rejected as a whole; the group is added without them.
    assert wiretap.writes()[:2] == [("add", NO_SUCH_OBJECT), ("add", 0)]


def test_a_rejected_combined_update_falls_back_and_converges_exactly(
    directory: Directory, wiretap: Wiretap, ad_admin, test_ou: str, users: list[uuid.UUID]
) -> None:
    state = desired(test_ou, name="Fast", members=users[:2])
    converge(directory, state, default_container=None, writer="test")
    current = directory.find_group(state.anchor)
    assert current is not None
    update = changed(state, [users[0], users[2], users[3]], "new team")
    stale_plan = plan(current, update, {}, base_dn=directory.base_dn)
    # Between the writer's read and its write, someone adds one of the wanted members by hand.
    assert ad_admin.modify(current.dn, {"member": [(ldap3.MODIFY_ADD, [f"<GUID={users[2]}>"])]}), ad_admin.result
    wiretap.clear()
    applied = Applied()

    directory.apply(stale_plan, current, applied)

    assert wiretap.writes()[0] == ("modify", ENTRY_ALREADY_EXISTS)
    assert (applied.members_added, applied.members_removed) == (1, 1)
    assert read(ad_admin, test_ou, state.anchor) == ("new team", {users[0], users[2], users[3]})


def test_the_anchor_is_read_again_before_a_rename_and_a_delete(
    directory: Directory, wiretap: Wiretap, test_ou: str
) -> None:
    state = desired(test_ou, name="Fast", members=[])
    converge(directory, state, default_container=None, writer="test")

    for step in (
        state.model_copy(update={"attributes": {**state.attributes, "cn": f"Renamed_{state.group_id[-12:]}"}}),
        state.model_copy(update={"state": "absent"}),
    ):
        wiretap.clear()
        result = converge(directory, step, default_container=None, writer="test").result
        assert result.status == "success"
        # find_group's read and the re-check of the anchor, then the one write.
        assert len(wiretap.searches()) == 2 and [op for op, _ in wiretap.writes()] == [
            "modify_dn" if step.state == "present" else "delete"
        ]
