"""Planning a group's convergence without AD: what the writer would change, and what it refuses."""

from __future__ import annotations

import uuid

import pytest

from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, DesiredMember, anchor_of
from writers import dn
from writers.errors import Refused
from writers.reconcile import (
    ANCHOR_ATTRIBUTE,
    MAX_MEMBERS,
    MEMBER_CHUNK,
    AdGroup,
    AttributeChange,
    member_value,
    plan,
)

BASE = "DC=e2ad,DC=test"
GROUPS = f"OU=Groups,{BASE}"
GROUP_ID = "6f4b1c9e-0000-4000-8000-00000000abcd"
ANCHOR = anchor_of(GROUP_ID)
USERS = [uuid.UUID(int=i) for i in range(1, 6)]


def desired(**overrides: object) -> DesiredGroup:
    fields: dict[str, object] = {
        "group_id": GROUP_ID,
        "anchor": ANCHOR,
        "state": "present",
        "container": GROUPS,
        "attributes": {
            "cn": "Sales_00000000abcd",
            "displayName": "Sales",
            "description": "Sales team",
            "adminDescription": ANCHOR,
            "groupType": UNIVERSAL_SECURITY_GROUP,
        },
        "create_only": {"sAMAccountName": "Sales_abcd"},
        "members": [user(guid) for guid in USERS[:3]],
    }
    fields.update(overrides)
    return DesiredGroup.model_validate(fields)


def user(guid: uuid.UUID) -> DesiredMember:
    return DesiredMember(type="user", id=f"entra-{guid.int}", object_guid=str(guid))


def in_ad(desired_group: DesiredGroup, **overrides: object) -> AdGroup:
    """The AD object exactly as the desired state would have created it."""
    attributes = {
        name.lower(): (str(value),) for name, value in desired_group.attributes.items() if value not in (None, "")
    }
    attributes["samaccountname"] = ("Sales_abcd",)
    fields: dict[str, object] = {
        "dn": f"CN={dn.escape_rdn_value(str(desired_group.attributes['cn']))},{GROUPS}",
        "object_guid": uuid.UUID(int=99),
        "anchor": ANCHOR,
        "attributes": attributes,
        "members": frozenset(uuid.UUID(m.object_guid) for m in desired_group.members if m.object_guid),
        "object_sid": "S-1-5-21-1-2-3-1105",
    }
    fields.update(overrides)
    return AdGroup(**fields)  # type: ignore[arg-type]


def test_create_carries_every_attribute_the_anchor_and_the_members() -> None:
    result = plan(None, desired(), {}, base_dn=BASE)

    assert result.action == "create"
    assert result.dn == f"CN=Sales_00000000abcd,{GROUPS}"
    assert result.create_attributes == {
        "objectClass": "group",
        "groupType": UNIVERSAL_SECURITY_GROUP,
        "displayName": "Sales",
        "description": "Sales team",
        "adminDescription": ANCHOR,
        "sAMAccountName": "Sales_abcd",
        ANCHOR_ATTRIBUTE: ANCHOR,
    }
    assert result.members_to_add == (tuple(member_value(g) for g in USERS[:3]),)
    assert member_value(USERS[0]) == f"<GUID={USERS[0]}>"


def test_create_leaves_out_attributes_without_a_value_and_uses_the_default_container() -> None:
    state = desired(container=None, attributes={"cn": "Empty", "description": None, "info": ""}, members=[])

    result = plan(None, state, {}, base_dn=BASE, default_container=GROUPS)

    assert result.dn == f"CN=Empty,{GROUPS}"
    assert "description" not in result.create_attributes and "info" not in result.create_attributes
    assert result.create_attributes["groupType"] == UNIVERSAL_SECURITY_GROUP
    assert result.members_to_add == ()


def test_identical_state_plans_nothing() -> None:
    state = desired()
    result = plan(in_ad(state), state, {}, base_dn=BASE)
    assert result.action == "skip"
    assert not result.writes


def test_changed_attribute_is_replaced_and_unmanaged_ones_are_left_alone() -> None:
    state = desired()
    current = in_ad(state, attributes={**in_ad(state).attributes, "displayname": ("Old",), "info": ("manual",)})

    result = plan(current, state, {}, base_dn=BASE)

    assert result.action == "update"
    assert result.changes == (AttributeChange("displayName", ("Old",), ("Sales",)),)


def test_description_that_became_empty_is_removed() -> None:
    state = desired()
    result = plan(in_ad(state), desired(attributes={**state.attributes, "description": None}), {}, base_dn=BASE)
    assert result.changes == (AttributeChange("description", ("Sales team",), ()),)


def test_integer_attributes_compare_with_ad_strings() -> None:
    state = desired()
    current = in_ad(state, attributes={**in_ad(state).attributes, "grouptype": ("-2147483646",)})
    result = plan(current, state, {}, base_dn=BASE)
    assert result.changes == (AttributeChange("groupType", ("-2147483646",), ("-2147483640",)),)


def test_cn_change_renames_in_place() -> None:
    current = in_ad(desired())
    renamed = desired(attributes={**desired().attributes, "cn": "Sales, EMEA_00000000abcd"})

    result = plan(current, renamed, {}, base_dn=BASE)

    assert result.relocation is not None
    assert result.relocation.new_rdn == r"CN=Sales\, EMEA_00000000abcd"
    assert result.relocation.new_parent is None
    assert result.dn == rf"CN=Sales\, EMEA_00000000abcd,{GROUPS}"
    assert result.changes == ()  # cn is never modified as an attribute


def test_case_only_rename_is_a_rename() -> None:
    current = in_ad(desired())
    result = plan(current, desired(attributes={**desired().attributes, "cn": "SALES_00000000abcd"}), {}, base_dn=BASE)
    assert result.relocation is not None and result.relocation.new_rdn == "CN=SALES_00000000abcd"


def test_container_change_moves_and_rename_plus_move_is_one_relocation() -> None:
    current = in_ad(desired())
    other = f"OU=Other,{BASE}"

    moved = plan(current, desired(container=other), {}, base_dn=BASE)
    both = plan(current, desired(container=other, attributes={**desired().attributes, "cn": "New"}), {}, base_dn=BASE)

    assert moved.relocation is not None and moved.relocation.new_parent == other
    assert moved.dn == f"CN=Sales_00000000abcd,{other}"
    assert both.relocation is not None and both.dn == f"CN=New,{other}"


def test_container_written_differently_is_not_a_move() -> None:
    current = in_ad(desired())
    result = plan(current, desired(container="ou=groups, dc=E2AD,  DC=test"), {}, base_dn=BASE)
    assert result.relocation is None and result.action == "skip"


def test_members_are_diffed_by_object_guid() -> None:
    state = desired(members=[user(g) for g in (USERS[0], USERS[3], USERS[4])])
    current = in_ad(desired())  # has USERS[0..2]

    result = plan(current, state, {}, base_dn=BASE)

    assert result.members_to_add == ((member_value(USERS[3]), member_value(USERS[4])),)
    assert result.members_to_remove == ((member_value(USERS[1]), member_value(USERS[2])),)
    assert result.changes == ()


def test_member_guids_are_normalised_before_comparing() -> None:
    state = desired(members=[DesiredMember(type="user", id="u", object_guid="{" + str(USERS[0]).upper() + "}")])
    current = in_ad(desired(), members=frozenset({USERS[0]}))
    assert plan(current, state, {}, base_dn=BASE).action == "skip"


def test_member_changes_are_chunked() -> None:
    many = [uuid.UUID(int=1000 + i) for i in range(2 * MEMBER_CHUNK + 5)]
    result = plan(None, desired(members=[user(g) for g in many]), {}, base_dn=BASE)
    assert [len(chunk) for chunk in result.members_to_add] == [MEMBER_CHUNK, MEMBER_CHUNK, 5]
    assert {v for chunk in result.members_to_add for v in chunk} == {member_value(g) for g in many}


def test_a_group_at_the_member_limit_is_planned() -> None:
    members = [user(uuid.UUID(int=10_000 + i)) for i in range(MAX_MEMBERS - 1)]
    members.append(DesiredMember(type="group", id="g1", anchor="Group_g1"))  # a nested group counts as one
    result = plan(None, desired(members=members), {"Group_g1": uuid.UUID(int=7)}, base_dn=BASE)
    assert sum(len(chunk) for chunk in result.members_to_add) == MAX_MEMBERS


def test_a_group_over_the_member_limit_is_refused_naming_the_group_and_the_count() -> None:
    members = [user(uuid.UUID(int=10_000 + i)) for i in range(MAX_MEMBERS + 1)]
    too_big = desired(members=members)

    for current in (None, in_ad(desired())):
        with pytest.raises(Refused, match=rf"{GROUP_ID} \({ANCHOR}\) has 50,001 members.*50,000"):
            plan(current, too_big, {}, base_dn=BASE)
    # Deleting it is still allowed: the limit is about what is written, not what is removed.
    assert plan(in_ad(desired()), desired(state="absent", members=members), {}, base_dn=BASE).action == "delete"


def test_member_is_never_replaced_through_the_attributes() -> None:
    state = desired(attributes={**desired().attributes, "member": "CN=someone,DC=e2ad,DC=test"})
    assert "member" not in plan(None, state, {}, base_dn=BASE).create_attributes
    assert plan(in_ad(desired()), state, {}, base_dn=BASE).action == "skip"


def test_nested_groups_resolve_by_anchor_and_missing_ones_are_warnings() -> None:
    nested_guid = uuid.UUID(int=500)
    present = DesiredMember(type="group", id="g1", anchor="Group_g1")
    missing = DesiredMember(type="group", id="g2", anchor="Group_g2")
    state = desired(members=[present, missing])

    result = plan(None, state, {"Group_g1": nested_guid}, base_dn=BASE)

    assert result.members_to_add == ((member_value(nested_guid),),)
    assert result.unresolved == (missing,)
    assert any("Group_g2" in warning for warning in result.warnings)


def test_a_missing_nested_group_does_not_remove_anything_else() -> None:
    state = desired(members=[*desired().members, DesiredMember(type="group", id="g2", anchor="Group_g2")])
    result = plan(in_ad(desired()), state, {}, base_dn=BASE)
    assert result.action == "skip" and result.unresolved and result.warnings


def test_user_without_object_guid_is_a_warning() -> None:
    state = desired(members=[DesiredMember(type="user", id="cloud-only")])
    result = plan(None, state, {}, base_dn=BASE)
    assert result.members_to_add == ()
    assert any("cloud-only" in warning for warning in result.warnings)


def test_absent_state_deletes_the_anchored_group_or_skips() -> None:
    current = in_ad(desired())
    assert plan(current, desired(state="absent"), {}, base_dn=BASE).action == "delete"
    assert plan(None, desired(state="absent"), {}, base_dn=BASE).action == "skip"


@pytest.mark.parametrize(
    "overrides",
    [
        {"object_sid": "S-1-5-21-1-2-3-512"},  # Domain Admins by RID
        {"object_sid": "S-1-5-32-544"},  # BUILTIN\Administrators
        {"critical_system_object": True},
        {"attributes": {"cn": ("Schema Admins",)}},
    ],
)
def test_protected_groups_are_refused_even_with_our_anchor(overrides: dict[str, object]) -> None:
    current = in_ad(desired(), **overrides)
    with pytest.raises(Refused, match="refusing"):
        plan(current, desired(), {}, base_dn=BASE)
    with pytest.raises(Refused):
        plan(current, desired(state="absent"), {}, base_dn=BASE)


@pytest.mark.parametrize("name", ["Domain Admins", "administrators", "Enterprise Key Admins"])
def test_creating_a_group_named_like_a_protected_one_is_refused(name: str) -> None:
    with pytest.raises(Refused, match="protected"):
        plan(None, desired(attributes={"cn": name}), {}, base_dn=BASE)
    with pytest.raises(Refused, match="protected"):
        plan(None, desired(create_only={"sAMAccountName": name}), {}, base_dn=BASE)


def test_an_object_without_our_anchor_is_refused() -> None:
    with pytest.raises(Refused, match="anchor"):
        plan(in_ad(desired(), anchor=None), desired(), {}, base_dn=BASE)


@pytest.mark.parametrize("container", ["OU=Elsewhere,DC=other,DC=test", f"CN=Builtin,{BASE}"])
def test_nothing_is_written_outside_the_base_dn_or_into_builtin(container: str) -> None:
    with pytest.raises(Refused, match=container.split(",")[0]):
        plan(None, desired(container=container), {}, base_dn=BASE)
    with pytest.raises(Refused):
        plan(in_ad(desired()), desired(container=container), {}, base_dn=BASE)


def test_desired_state_without_cn_or_container_is_refused() -> None:
    with pytest.raises(Refused, match="no cn"):
        plan(None, desired(attributes={"displayName": "x"}), {}, base_dn=BASE)
    with pytest.raises(Refused, match="target container"):
        plan(None, desired(container=None), {}, base_dn=BASE)


def test_nothing_is_written_outside_the_configured_containers() -> None:
    marketing, elsewhere = f"OU=Marketing,{BASE}", f"OU=Elsewhere,{BASE}"
    fence = (GROUPS, marketing)

    assert plan(None, desired(container=f"OU=EMEA,{marketing}"), {}, base_dn=BASE, containers=fence).action == "create"
    with pytest.raises(Refused, match=r"outside the containers e2ad writes in .*provisioning.containers"):
        plan(None, desired(container=elsewhere), {}, base_dn=BASE, containers=fence)
    with pytest.raises(Refused, match="outside the containers"):  # no move out of the fence
        plan(in_ad(desired()), desired(container=elsewhere), {}, base_dn=BASE, containers=fence)
    # Our group, moved out of the fence by hand, is moved back, and no group is deleted outside it.
    moved_out = in_ad(desired(), dn=f"CN=Sales_00000000abcd,{elsewhere}")
    back = plan(moved_out, desired(), {}, base_dn=BASE, containers=fence)
    assert back.relocation is not None and back.dn == f"CN=Sales_00000000abcd,{GROUPS}"
    with pytest.raises(Refused, match="outside the containers"):
        plan(moved_out, desired(state="absent"), {}, base_dn=BASE, containers=fence)
    assert plan(in_ad(desired()), desired(state="absent"), {}, base_dn=BASE, containers=fence).action == "delete"


def test_a_cn_longer_than_ad_allows_is_refused_counting_utf16_code_units() -> None:
    def with_cn(cn: str) -> DesiredGroup:
        return desired(attributes={**desired().attributes, "cn": cn})

    assert plan(None, with_cn("x" * 64), {}, base_dn=BASE).action == "create"
    with pytest.raises(Refused, match=r"is 80 UTF-16 code units long, AD allows 64"):
        plan(None, with_cn("x" * 80), {}, base_dn=BASE)
    emoji = "x" * 62 + "\U0001f465"  # 63 characters, 64 code units (the emoji is two): still fits
    assert plan(None, with_cn(emoji), {}, base_dn=BASE).action == "create"
    with pytest.raises(Refused, match=r"is 65 UTF-16 code units long"):
        plan(None, with_cn(emoji + "x"), {}, base_dn=BASE)
    with pytest.raises(Refused, match="AD allows 64"):  # a rename to it, too
        plan(in_ad(desired()), with_cn("x" * 80), {}, base_dn=BASE)


def test_the_anchor_attribute_cannot_be_changed_through_the_attributes() -> None:
    state = desired(attributes={**desired().attributes, ANCHOR_ATTRIBUTE: "Group_other"})
    assert plan(None, state, {}, base_dn=BASE).create_attributes[ANCHOR_ATTRIBUTE] == ANCHOR
    assert plan(in_ad(desired()), state, {}, base_dn=BASE).action == "skip"


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("a,b+c", r"a\,b\+c"),
        ('say "hi"', r"say \"hi\""),
        ("back\\slash", r"back\\slash"),
        ("<x>;y=z", r"\<x\>\;y\=z"),
        ("#first", r"\#first"),
        (" lead and trail ", r"\ lead and trail\ "),
        ("nul\x00", r"nul\00"),
        ("Ünïcødé ✓", "Ünïcødé ✓"),
    ],
)
def test_cn_values_are_escaped_per_rfc_4514(value: str, escaped: str) -> None:
    assert dn.escape_rdn_value(value) == escaped
    assert dn.normalize(f"CN={escaped},{GROUPS}")[0] == (("cn", value.casefold()),)


def test_dn_helpers_honour_escapes() -> None:
    assert dn.split(rf"CN=a\,b,{GROUPS}") == (r"CN=a\,b", GROUPS)
    assert dn.same(r"CN=a\2Cb,OU=X", r"cn=A\,B, ou=x")
    assert dn.is_within(f"CN=x,{GROUPS}", BASE)
    assert not dn.is_within("CN=x,DC=e2ad,DC=test,DC=evil", BASE)
    assert dn.strip_extended("<GUID=abc>;<SID=0105>;CN=x,DC=y") == "CN=x,DC=y"
    assert dn.extended_guid("<GUID=9833fa59c7457247a267ff4c60b3ae1a>;<SID=01>;CN=x") == (
        "9833fa59c7457247a267ff4c60b3ae1a"
    )
