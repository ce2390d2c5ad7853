"""Configured mappings through the writer to the real Samba DC: sAMAccountName collisions, on-create values."""

from __future__ import annotations

import uuid

import pytest

from processors.mapping import GroupMapper
from schemas.desired import DesiredGroup
from tests.integration.helpers import Harness, desired, read_group

pytestmark = pytest.mark.integration

RULES = [
    {"target": "sAMAccountName", "type": "direct", "source": "mailNickname"},
    {"target": "info", "type": "constant", "value": "provisioned by e2ad", "apply": "on_create"},
]


def mapped(mapper: GroupMapper, test_ou: str, group_id: str, **attributes: object) -> DesiredGroup:
    """The desired state the processors publish for a group with these Entra attributes."""
    group = mapper.map(group_id, {"displayName": "Sales", "description": "Sales team", **attributes})
    return desired(test_ou, group_id).model_copy(
        update={"attributes": group.attributes, "create_only": group.create_only}
    )


async def test_two_groups_mapped_to_one_sam_account_name_fail_the_second_naming_it(
    writer: Harness, ad_admin, test_ou: str
) -> None:
    mapper = GroupMapper(RULES, {}, test_ou)
    taken = f"dup{uuid.uuid4().hex[:12]}"
    first = mapped(mapper, test_ou, str(uuid.uuid4()), mailNickname=taken)
    [created] = await writer.converge(first)
    second = mapped(mapper, test_ou, str(uuid.uuid4()), mailNickname=taken)
    other = mapped(mapper, test_ou, str(uuid.uuid4()), mailNickname=f"own{uuid.uuid4().hex[:12]}")

    results = {r.group_id: r for r in await writer.converge(second, other)}

    assert (created.action, created.status) == ("create", "success")
    collided = results[second.group_id]
    assert (collided.action, collided.status, collided.error_code) == ("create", "failure", 68)
    message = collided.error_message or ""
    assert f"sAMAccountName {taken!r} is already used in the domain by {created.dn}" in message
    assert read_group(ad_admin, test_ou, second.anchor) is None
    assert results[other.group_id].status == "success"  # the other groups are unaffected
    assert read_group(ad_admin, test_ou, first.anchor)["sAMAccountName"] == [taken]


async def test_on_create_values_are_written_once_and_never_overwritten(writer: Harness, ad_admin, test_ou: str) -> None:
    mapper = GroupMapper(RULES, {}, test_ou)
    group_id = str(uuid.uuid4())
    name = f"first{uuid.uuid4().hex[:10]}"
    [created] = await writer.converge(mapped(mapper, test_ou, group_id, mailNickname=name))
    ad_admin.modify(created.dn, {"info": [("MODIFY_REPLACE", ["edited in AD"])]})
    assert ad_admin.result["result"] == 0, ad_admin.result

    later = mapped(mapper, test_ou, group_id, mailNickname=f"renamed{uuid.uuid4().hex[:8]}", description="changed")
    [updated] = await writer.converge(later)

    assert (updated.action, updated.status) == ("update", "success")
    ad_admin.search(created.dn, "(objectClass=group)", search_scope="BASE", attributes=["info", "sAMAccountName"])
    entry = ad_admin.response[0]["attributes"]
    assert entry["sAMAccountName"] == [name]  # flows on create only
    assert entry["info"] == ["edited in AD"]
    assert {m.name for m in updated.modified} == {"description"}
