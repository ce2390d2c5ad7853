"""Reading a large group's members the way Windows AD hands them out: member;range=0-1499, then on.

Samba returns explicit ranges as asked (the integration tests run that path on the real DC),
but only Windows AD shortens a range on its own (MaxValRange). These tests feed Directory's
search function answers in the shape ldap3 gives for AD, without a socket.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import ldap3
import pytest

from schemas.config import AdSettings
from writers.directory import MEMBER_RANGE, Directory
from writers.errors import ObjectError

BASE = "DC=e2ad,DC=test"
ANCHOR = "Group_6f4b1c9e-0000-4000-8000-00000000abcd"
GROUP_GUID = uuid.UUID("59fa3398-45c7-4772-a267-ff4c60b3ae1a")
GROUP_DN = f"CN=Big,OU=Groups,{BASE}"
MEMBERS = [uuid.UUID(int=0x1000 + i) for i in range(3456)]


def member_value(guid: uuid.UUID, index: int, *, dashed: bool = False) -> str:
    """A member value as the extended-DN control writes it: hex of bytes_le, or dashed (control value 1)."""
    text = str(guid) if dashed else guid.bytes_le.hex()
    return f"<GUID={text}>;<SID=010500000000000515000000{index:08x}>;CN=user{index},OU=Users,{BASE}"


def entry(attributes: Mapping[str, list[Any]]) -> dict[str, Any]:
    """One searchResEntry of ldap3's response list, as SAFE_SYNC returns it for the group."""
    return {
        "type": "searchResEntry",
        "dn": f"<GUID={GROUP_GUID.bytes_le.hex()}>;<SID=0105000000000005150000000b040000>;{GROUP_DN}",
        "attributes": {"cn": ["Big"], "msDS-ExternalDirectoryObjectId": [ANCHOR], **attributes},
        "raw_attributes": {"objectGUID": [GROUP_GUID.bytes_le], "objectSid": []},
    }


class RangedSearch:
    """Answers like Windows AD with MaxValRange=`cap`: a range never holds more than `cap` values."""

    def __init__(self, members: list[uuid.UUID], cap: int, *, dashed: bool = False) -> None:
        self.values = [member_value(guid, i, dashed=dashed) for i, guid in enumerate(members)]
        self.cap = cap
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, base: str, search_filter: str, attributes: list[str], scope: str, *, what: str, extended_dn: bool = False
    ) -> list[dict[str, Any]]:
        self.calls.append({"base": base, "attributes": attributes, "scope": scope, "extended_dn": extended_dn})
        [asked] = [name for name in attributes if name.lower().startswith("member;range=")]
        first, _, last = asked.partition("=")[2].partition("-")
        start = int(first)
        end = len(self.values) - 1 if last == "*" else int(last)
        end = min(end, start + self.cap - 1)
        if end >= len(self.values) - 1:  # the answer reaches the last value: AD says so with `*`
            return [entry({f"member;range={start}-*": self.values[start:]})]
        return [entry({f"member;range={start}-{end}": self.values[start : end + 1]})]


@pytest.fixture
def directory() -> Directory:
    return Directory(AdSettings(base_dn=BASE))


def test_members_are_read_range_by_range_with_guids_until_ad_says_star(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = RangedSearch(MEMBERS, cap=1500)
    monkeypatch.setattr(directory, "_search", search)

    group = directory.find_group(ANCHOR)

    assert group is not None and group.members == frozenset(MEMBERS)
    assert group.dn == GROUP_DN and group.object_guid == GROUP_GUID
    first, *more = search.calls
    assert f"member;range=0-{MEMBER_RANGE - 1}" in first["attributes"]
    assert "member" not in first["attributes"]  # never the unranged attribute as well
    assert [call["attributes"] for call in more] == [["member;range=1500-2999"], ["member;range=3000-4499"]]
    for call in more:  # by objectGUID, one object, and with GUIDs in the values
        assert call["base"] == f"<GUID={GROUP_GUID}>"
        assert call["scope"] == ldap3.BASE and call["extended_dn"]
    assert "member;range=3000-*" not in group.attributes  # ranges do not leak into the managed attributes


def test_a_dc_that_caps_ranges_below_what_was_asked_is_followed_from_where_it_stopped(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = RangedSearch(MEMBERS[:2500], cap=1000, dashed=True)  # e.g. MaxValRange=1000, control value 1
    monkeypatch.setattr(directory, "_search", search)

    group = directory.find_group(ANCHOR)

    assert group is not None and group.members == frozenset(MEMBERS[:2500])
    assert [call["attributes"] for call in search.calls[1:]] == [["member;range=1000-2499"], ["member;range=2000-3499"]]


def test_a_small_group_and_an_empty_one_take_one_search(directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    for members in (MEMBERS[:3], []):
        search = RangedSearch(members, cap=1500)
        monkeypatch.setattr(directory, "_search", search)
        group = directory.find_group(ANCHOR)
        assert group is not None and group.members == frozenset(members)
        assert len(search.calls) == 1


def test_an_unranged_member_attribute_is_read_too(directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    values = [member_value(guid, i) for i, guid in enumerate(MEMBERS[:5])]
    monkeypatch.setattr(directory, "_search", lambda *args, **kwargs: [entry({"member": values})])

    group = directory.find_group(ANCHOR)

    assert group is not None and group.members == frozenset(MEMBERS[:5])


def test_a_group_that_vanishes_between_ranges_is_an_object_error(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = RangedSearch(MEMBERS, cap=1500)

    def vanishing(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return search(*args, **kwargs) if not search.calls else []

    monkeypatch.setattr(directory, "_search", vanishing)

    with pytest.raises(ObjectError, match=f"{GROUP_DN} disappeared while its members were read"):
        directory.find_group(ANCHOR)
