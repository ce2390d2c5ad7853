"""Cloud Sync's default attribute mappings for groups (reference §2), from Entra attributes to AD.

Computed in code until the expression language replaces them; each function says which
expression it implements so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.desired import UNIVERSAL_SECURITY_GROUP, AttributeValue, anchor_of


def _trimmed(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def group_attributes(group_id: str, group: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The attributes that flow on create and on every update."""
    display_name = group.get("displayName")
    description = _trimmed(group.get("description"))[:448]  # Left(Trim([description]),448)
    anchor = anchor_of(group_id)
    return {
        # Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12)): at most 64 characters
        "cn": f"{_trimmed(display_name)[:51]}_{group_id[24:36]}",
        # an empty description flows NULL, which removes the attribute in AD
        "description": description or None,
        "displayName": display_name if display_name else None,
        "msDS-ExternalDirectoryObjectId": anchor,
        # the same value lets an AD→Entra sync recognise and skip these groups
        "adminDescription": anchor,
        "groupType": UNIVERSAL_SECURITY_GROUP,
    }


def group_create_only_attributes(group_id: str) -> dict[str, AttributeValue]:
    """Flowed once, when the group is created: AD would otherwise invent `$XXXXXX-…` names."""
    return {"sAMAccountName": f"Group_{group_id[24:36]}"}
