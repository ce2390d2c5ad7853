"""The fixed default mappings Cloud Sync applies to a group it provisions from Entra ID to AD (reference §2)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# `<displayName, trimmed, ≤51>_<last 12 characters of objectId>`: at most 64, AD's cn limit.
DEFAULT_CN_EXPRESSION: Final = 'Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))'
# The anchor matched in AD; adminDescription carries the same value so AD→Entra sync can filter it out.
DEFAULT_ANCHOR_EXPRESSION: Final = 'Append("Group_",[objectId])'

DEFAULT_GROUP_MAPPINGS: Final = MappingProxyType(
    {
        "cn": DEFAULT_CN_EXPRESSION,
        "description": "Left(Trim([description]),448)",
        "displayName": "[displayName]",  # a Direct mapping in Cloud Sync
        "adminDescription": DEFAULT_ANCHOR_EXPRESSION,
        "msDS-ExternalDirectoryObjectId": DEFAULT_ANCHOR_EXPRESSION,
    }
)
