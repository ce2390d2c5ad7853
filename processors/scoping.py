"""Which Entra groups are provisioned: the always-on security clause of Cloud Sync.

Cloud Sync evaluates `securityEnabled IS TRUE AND dirSyncEnabled IS FALSE AND mailEnabled IS
FALSE` before any scoping filter (reference §1.1); dirSyncEnabled is Graph's
onPremisesSyncEnabled, which is null for groups that were never synced from AD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    reason: str


def security_clause(group: Mapping[str, Any]) -> ScopeDecision:
    if group.get("securityEnabled") is not True:
        return ScopeDecision(False, "not a security group")
    if group.get("mailEnabled") is not False:
        return ScopeDecision(False, "mail-enabled groups are not provisioned")
    if group.get("onPremisesSyncEnabled") is True:
        return ScopeDecision(False, "synced from on-premises AD")
    if "Unified" in (group.get("groupTypes") or ()):
        return ScopeDecision(False, "Microsoft 365 groups are not provisioned")
    return ScopeDecision(True, "all security groups")
