"""What `e2ad provision` prints: Cloud Sync's on-demand steps for one group (entra-provisioning.md §4.4).

`e2ad provision --json` prints ProvisionReport.model_dump(mode="json", by_alias=True); its fields
are documented in docs/operations.md. New fields may be added; existing ones keep their meaning.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Operation = Literal["create", "update", "rename", "move", "delete", "skip"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ConfigurationUsed(_Model):
    version: int | None  # None: no configuration on e2ad.config was usable, the file's was used
    state: Literal["enabled", "disabled", "deleted", "none"]  # of e2ad.config's record ("none": no record)
    source: Literal["e2ad.config", "file"]  # where the scope and mappings evaluated came from


class ImportStep(_Model):
    """The group as Graph has it: the source attributes read, and its direct members."""

    in_entra: bool
    removed: Literal["soft-deleted", "deleted"] | None  # how Graph reports a group it does not have
    attributes: dict[str, Any]  # as Graph sent them, with the active configuration's $select
    members: int
    users: int
    groups: int
    other: int  # devices, service principals, contacts: never provisioned


class Clause(_Model):
    filter: int  # 1-based, as in the out-of-scope reason
    clause: str  # displayName REGEX MATCH "^(Sales|Ops)"
    attribute: str
    value: Any  # the group's value (null: null or not sent)
    passed: bool
    detail: str | None  # why it failed


class ScopeStep(_Model):
    in_scope: bool
    reason: str  # the processors' reason, as the provisioning log and a delete's reason carry it
    security_passed: bool  # Cloud Sync's always-on clause: security-enabled, not mail-enabled, not synced from AD
    security_reason: str
    selected: bool | None  # with scope.mode selected: whether scope.groups lists the group; else null
    clauses: list[Clause]


class AdObject(_Model):
    dn: str
    object_guid: str | None = None
    anchor: str | None = None


class MatchStep(_Model):
    anchor: str  # msDS-ExternalDirectoryObjectId = Group_<objectId>
    found: AdObject | None  # the AD group carrying the anchor, or null
    conflict: AdObject | None  # another object already at the DN the group would be created or renamed to


class AttributeChange(_Model):
    name: str
    old: list[str]  # empty: no value
    new: list[str]  # empty: the value is removed


class Member(_Model):
    type: Literal["user", "group", "unknown"]  # unknown: an AD member Graph does not list (to remove)
    id: str | None  # the Entra object id; null for a member only AD has
    display_name: str | None
    dn: str | None  # null: AD has no object with its objectGUID
    object_guid: str


class SkippedMember(_Model):
    type: str
    id: str
    display_name: str | None
    reason: str  # cloud-only user, nested group not in scope (why), nested group not in AD yet, …


class ActionStep(_Model):
    operations: list[Operation]  # e.g. ["rename", "move", "update"]; one of create, delete, skip alone
    dn: str | None  # where the group is afterwards (for a delete: where it is)
    old_dn: str | None  # before a rename or a move
    reason: str  # why this action
    error: str | None  # the mapping failed, or the writer refuses (the group is left as it is)
    attributes: list[AttributeChange]
    members_to_add: list[Member]
    members_to_remove: list[Member]
    members_skipped: list[SkippedMember]
    warnings: list[str]


class Applied(_Model):
    """What --apply did: the writer's decisions by status, as on ad.results (the provisioning log)."""

    statuses: dict[str, int]


class ProvisionReport(_Model):
    group_id: str
    display_name: str | None
    dry_run: bool
    configuration: ConfigurationUsed
    import_: ImportStep = Field(alias="import")
    scope: ScopeStep
    match: MatchStep
    action: ActionStep
    applied: Applied | None = None
    timings_ms: dict[str, float]  # graph (the fetch), ad (the reads), total

    def as_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)
