"""The pure parts of `e2ad config plan`: what would be published, how each group reconciles, the guard's verdict."""

from __future__ import annotations

import datetime as dt
import uuid

from e2ad.plan import GroupPlan, guard_holds, ordered, plan_groups, published_changes, summarise
from processors.deletion_guard import DeletionGuard, GuardSettings
from processors.provisioning import ProvisioningState
from processors.scoping import Scope
from schemas.changes import MemberRef
from schemas.config import ScopeSettings
from schemas.desired import DesiredGroup, anchor_of
from tests.unit.test_provisioning import CONTAINER, GROUP, NESTED, NOW, group_changed, state
from writers.reconcile import AdGroup

BASE = "DC=e2ad,DC=test"
OTHER = "0f6a3b5c-3333-4000-8000-000000000003"


def in_ad(desired: DesiredGroup, container: str = CONTAINER, **attributes: str) -> AdGroup:
    """The AD object as the desired state created it, with some attributes changed since."""
    values = {name.lower(): (str(v),) for name, v in desired.attributes.items() if v not in (None, "")}
    values.update({name.lower(): (value,) for name, value in attributes.items()})
    return AdGroup(
        dn=f"CN={values['cn'][0]},{container}",
        object_guid=uuid.uuid4(),
        anchor=desired.anchor,
        attributes=values,
        members=frozenset(),
        object_sid="S-1-5-21-1-2-3-1105",
    )


def planned(core: ProvisioningState, found: dict[str, list[AdGroup]]) -> list[GroupPlan]:
    publish, _ = published_changes(core)
    return plan_groups(core, publish, found, {}, base_dn=BASE, default_container=CONTAINER, containers=())


def test_only_desired_states_that_differ_from_the_published_ones_are_planned() -> None:
    core = state()
    core.apply(group_changed())  # published
    assert published_changes(core) == ([], [])
    core.groups[GROUP] = {**core.groups[GROUP], "attributes": {**core.groups[GROUP]["attributes"], "description": "x"}}
    [desired], [] = published_changes(core)
    assert desired.attributes["description"] == "x"
    assert core.is_published(GROUP, desired) is False  # asking changed nothing


def test_a_mapping_failure_is_a_failing_group() -> None:
    core = state(mappings=[{"target": "sAMAccountName", "type": "direct", "source": "mailNickname"}])
    core.groups[GROUP] = {**_known(), "attributes": group_changed(mailNickname="Sales/EMEA").attributes}
    [], [failure] = published_changes(core)
    assert failure.action == "fail" and failure.display_name == "Sales" and failure.error


def test_an_update_lists_every_attribute_old_to_new_and_a_rename_and_move_from_where() -> None:
    core = state()
    [desired] = core.apply(group_changed())
    ad = in_ad(desired, container=f"OU=Elsewhere,{BASE}", description="old", cn="Old_a1b2c3d4e5f6")
    core.groups[GROUP] = {**core.groups[GROUP], "published": None}
    [group] = planned(core, {desired.anchor.casefold(): [ad]})
    assert group.action == "update" and group.renamed and group.moved and group.old_dn == ad.dn
    assert group.dn == f"CN=Sales_a1b2c3d4e5f6,{CONTAINER}"
    assert [(a.name, a.old, a.new) for a in group.attributes] == [("description", ["old"], ["Sales team"])]


def test_a_nested_group_the_plan_creates_counts_as_an_added_member() -> None:
    core = state()
    core.apply(group_changed(NESTED, displayName="Inner"))
    core.apply(group_changed(members=[MemberRef(id=NESTED, type="group")]))
    for group_id in (GROUP, NESTED):
        core.groups[group_id] = {**core.groups[group_id], "published": None}
    groups = planned(core, {})
    assert {g.group_id: (g.action, g.members_added, g.waiting_for) for g in groups} == {
        GROUP: ("create", 1, 0),
        NESTED: ("create", 0, 0),
    }


def test_an_absent_group_is_a_delete_with_its_reason_and_one_already_gone_is_no_change() -> None:
    core = state()
    [desired] = core.apply(group_changed())
    core.apply(group_changed(OTHER, displayName="Other"))
    core.scope = Scope(ScopeSettings(mode="selected", groups=[OTHER]))
    groups = planned(core, {desired.anchor.casefold(): [in_ad(desired)]})
    [delete] = groups  # OTHER stays in scope and unchanged; GROUP leaves it
    assert delete.action == "delete" and delete.reason and delete.reason.startswith("out of scope")
    assert planned(core, {}) == []  # not in AD: nothing to delete


def test_the_guard_holds_a_burst_as_large_as_its_threshold_and_everything_once_tripped() -> None:
    deletes = [_absent(f"0f6a3b5c-4444-4000-8000-00000000000{i}") for i in range(3)]
    assert guard_holds({}, GuardSettings(threshold=4), deletes, NOW) == set()
    assert guard_holds({}, GuardSettings(threshold=3), deletes, NOW) == {d.group_id for d in deletes}
    tripped = DeletionGuard(GuardSettings(threshold=1), clock=lambda: NOW - dt.timedelta(hours=1))
    tripped.decide(_absent(OTHER))
    state_now = tripped.to_state()
    assert guard_holds(state_now, GuardSettings(threshold=100), deletes[:1], NOW) == {deletes[0].group_id}
    assert tripped.to_state() == state_now  # its state was copied, not changed


def test_summary_counts_and_order_put_failures_and_deletes_first() -> None:
    groups = [
        GroupPlan(group_id="b", display_name="B", action="update", dn="x", renamed=True),
        GroupPlan(group_id="a", display_name="A", action="delete", dn="y", held=True),
        GroupPlan(group_id="c", display_name="C", action="fail", dn=None, error="no"),
    ]
    assert [g.group_id for g in ordered(groups)] == ["c", "a", "b"]
    summary = summarise(groups, unchanged=7)
    assert (summary.updated, summary.renamed, summary.deleted, summary.held, summary.failed) == (1, 1, 1, 1, 1)
    assert summary.unchanged == 7


def _absent(group_id: str) -> DesiredGroup:
    return DesiredGroup(group_id=group_id, anchor=anchor_of(group_id), state="absent", reason="deleted in Entra")


def _known() -> dict[str, object]:
    return {"attributes": {}, "members": {}, "removed": None, "published": None, "provisioned": False}


def test_a_group_coming_back_unstages_its_delete_and_a_guard_left_with_nothing_staged_holds_no_more() -> None:
    tripped = DeletionGuard(GuardSettings(threshold=1), clock=lambda: NOW - dt.timedelta(hours=1))
    tripped.decide(_absent(OTHER))  # staged: the guard is quarantined
    back = DesiredGroup(group_id=OTHER, anchor=anchor_of(OTHER), state="present")
    assert guard_holds(tripped.to_state(), GuardSettings(threshold=100), [back, _absent(GROUP)], NOW) == set()
    assert guard_holds(tripped.to_state(), GuardSettings(threshold=100), [_absent(GROUP)], NOW) == {GROUP}
