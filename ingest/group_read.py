"""One group read from Graph on demand, with its direct members: what `e2ad provision` provisions.

The same SDK request builders and raw-JSON pages as the delta reader (ingest/delta.py send_page),
shaped as a full delta round's items so that `normalise` turns them into the change records the
processors fold in. A group Graph does not have is looked up among the deleted items: soft-deleted
(restorable) or deleted for good, as a delta round would report it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from msgraph import GraphServiceClient
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder

from ingest.delta import USER_SELECT, follow, send_page
from schemas.changes import MemberRef, MemberType

NOT_FOUND = 404
MEMBERS_PAGE = 999  # Graph's largest page of a members list: a 1,000-member group in two requests


@dataclass(frozen=True)
class GroupRead:
    """The group as a full delta round would carry it, and its direct members as Graph lists them."""

    group_id: str
    group: dict[str, Any]  # the group's item: its attributes and members@delta, or @removed
    members: list[dict[str, Any]]  # each member's item, with @odata.type

    def of_type(self, kind: MemberType) -> list[dict[str, Any]]:
        """The members of one type, as items of that resource's delta round (without @odata.type)."""
        return [
            {name: value for name, value in item.items() if name != "@odata.type"}
            for item in self.members
            if MemberRef.from_odata(item).type == kind
        ]

    def member_types(self) -> dict[str, MemberType]:
        """Each member's type by id: user, group, or other (devices, contacts, service principals)."""
        return {ref.id: ref.type for ref in map(MemberRef.from_odata, self.members)}


def member_select(group_select: Sequence[str]) -> list[str]:
    """What a member is read with: a user's attributes for its membership, a group's for its scope."""
    return list(dict.fromkeys([*USER_SELECT, *group_select]))


async def read_group(client: GraphServiceClient, group_id: str, select: Sequence[str]) -> GroupRead:
    """The group with `select`, and every direct member (users and groups) with member_select(select)."""
    item = client.groups.by_group_id(group_id)
    group_config = RequestConfiguration(
        query_parameters=GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(select=list(select))
    )
    try:
        group = await send_page(client, lambda: item.to_get_request_information(group_config), None)
    except APIError as exc:
        if exc.response_status_code != NOT_FOUND:
            raise
        return GroupRead(group_id, {"id": group_id, "@removed": {"reason": await _removal(client, group_id)}}, [])
    members_config = RequestConfiguration(
        query_parameters=MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(
            select=member_select(select), top=MEMBERS_PAGE
        )
    )
    make_request: Callable[[], RequestInformation] = lambda: item.members.to_get_request_information(members_config)  # noqa: E731
    members: list[dict[str, Any]] = []
    while True:
        page = await send_page(client, make_request, None)
        members.extend(page.get("value") or [])
        if not (link := page.get("@odata.nextLink")):
            break
        make_request = follow(item.members, link)
    refs = [{"@odata.type": member.get("@odata.type"), "id": member["id"]} for member in members]
    return GroupRead(group_id, {**group, "members@delta": refs}, members)


async def _removal(client: GraphServiceClient, group_id: str) -> Literal["changed", "deleted"]:
    """Among the deleted items: soft-deleted ("changed", restorable for 30 days), else deleted for good."""
    deleted = client.directory.deleted_items.by_directory_object_id(group_id)
    try:
        await send_page(client, deleted.to_get_request_information, None)
    except APIError as exc:
        if exc.response_status_code != NOT_FOUND:
            raise
        return "deleted"
    return "changed"
