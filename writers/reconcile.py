"""Pure reconciliation: (the group as AD has it, the desired group, resolved nested groups) → a plan.

No I/O here: directory.py reads the AD state and applies the plan, provision.py turns the
outcome into a provisioning-log record. The plan is the smallest change that makes AD match
the desired state (design principle 3): only attributes named in the desired state are
managed, members are diffed by objectGUID, and member values are never replaced wholesale.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from runtime.text import utf16_length
from schemas.desired import UNIVERSAL_SECURITY_GROUP, AttributeValue, DesiredGroup, DesiredMember
from writers import dn as dns
from writers.errors import Refused

ANCHOR_ATTRIBUTE = "msDS-ExternalDirectoryObjectId"
MEMBER_CHUNK = 1000  # values per member modify: fast on Samba (reference §5b), below AD's MaxValRange
# Cloud Sync does not provision groups with more members (entra-provisioning.md §1.5); a nested
# group counts as one member.
MAX_MEMBERS = 50_000
# AD's rangeUpper of cn, counted in UTF-16 code units. Windows AD refuses longer values; Samba
# stores them (entra-provisioning.md §3), so the writer checks, and a DC of either kind behaves alike.
MAX_CN = 64

# Managed through the DN (cn) or never writable through the mapping (the anchor links the object).
# member only ever changes by ADD/DELETE of a diff: a REPLACE from a mapping (or from a read that
# came back in ranges) could wipe a group.
_NOT_MODIFIABLE = frozenset({"cn", "name", "distinguishedname", "member", ANCHOR_ATTRIBUTE.lower()})

# Entra Cloud Sync refuses these (entra-provisioning.md §1.1); AD's builtin groups (CN=Builtin)
# and their domain counterparts are refused as well.
PROTECTED_GROUP_NAMES = frozenset(
    name.casefold()
    for name in (
        "Domain Admins", "Domain Guests", "Domain Users", "Enterprise Admins", "Enterprise Key Admins",
        "Group Policy Creation Owners", "Key Admins", "Protected Users", "Schema Admins",
        "Administrators", "Users", "Guests", "Account Operators", "Server Operators", "Print Operators",
        "Backup Operators", "Replicator", "Remote Desktop Users", "Network Configuration Operators",
        "Performance Monitor Users", "Performance Log Users", "Distributed COM Users", "IIS_IUSRS",
        "Cryptographic Operators", "Event Log Readers", "Certificate Service DCOM Access",
        "Pre-Windows 2000 Compatible Access", "Incoming Forest Trust Builders",
        "Windows Authorization Access Group", "Terminal Server License Servers", "Remote Management Users",
        "Domain Controllers", "Read-only Domain Controllers", "Enterprise Read-only Domain Controllers",
        "Cert Publishers", "DnsAdmins", "RAS and IAS Servers", "Allowed RODC Password Replication Group",
        "Denied RODC Password Replication Group",
    )
)  # fmt: skip
# Well-known domain RIDs of privileged groups (MS-DTYP 2.4.2.4): 512 Domain Admins … 527 Enterprise Key Admins.
PROTECTED_RIDS = frozenset({498, 512, 513, 514, 516, 517, 518, 519, 520, 521, 525, 526, 527})
BUILTIN_SID_PREFIX = "S-1-5-32-"

Values = tuple[str, ...]


@dataclass(frozen=True)
class AdGroup:
    """The group as AD has it, found by its anchor."""

    dn: str
    object_guid: uuid.UUID
    anchor: str | None
    attributes: Mapping[str, Values]  # lower-cased attribute name → values
    members: frozenset[uuid.UUID]  # objectGUIDs of the direct members
    object_sid: str | None = None
    critical_system_object: bool = False

    def values(self, attribute: str) -> Values:
        return self.attributes.get(attribute.lower(), ())


@dataclass(frozen=True)
class AttributeChange:
    name: str
    old: Values
    new: Values  # empty: remove the attribute (MODIFY_DELETE), else MODIFY_REPLACE


@dataclass(frozen=True)
class Relocation:
    """One modify_dn: a rename (new cn), a move (new parent), or both."""

    old_dn: str
    new_cn: str | None  # None: keeps its name
    new_parent: str | None  # None: stays in its container

    @property
    def new_rdn(self) -> str:
        return dns.rdn("CN", self.new_cn) if self.new_cn is not None else dns.split(self.old_dn)[0]

    @property
    def parent(self) -> str:
        """The container afterwards (the current one when only renamed)."""
        return self.new_parent if self.new_parent is not None else dns.split(self.old_dn)[1]

    @property
    def new_dn(self) -> str:
        return f"{self.new_rdn},{self.parent}"


@dataclass(frozen=True)
class Plan:
    action: Literal["create", "update", "delete", "skip"]
    dn: str | None  # where the group is once the plan has been applied (before, for delete)
    create_attributes: Mapping[str, str | int] = field(default_factory=dict)
    relocation: Relocation | None = None
    changes: tuple[AttributeChange, ...] = ()
    members_to_add: tuple[tuple[str, ...], ...] = ()  # chunks of member values (<GUID=…>)
    members_to_remove: tuple[tuple[str, ...], ...] = ()
    # Nested groups not in AD yet: reported as warnings, and the group waits on them
    # (writers/pending.py) until they are created.
    unresolved: tuple[DesiredMember, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        return self.action in ("create", "delete") or bool(
            self.relocation or self.changes or self.members_to_add or self.members_to_remove
        )


def plan(
    current: AdGroup | None,
    desired: DesiredGroup,
    nested: Mapping[str, uuid.UUID],
    *,
    base_dn: str,
    default_container: str | None = None,
    containers: Sequence[str] = (),
) -> Plan:
    """The smallest change that makes AD match `desired`. Raises Refused when e2ad must not write at all.

    `nested` maps the anchors of nested member groups that exist in AD to their objectGUIDs.
    Every DN written to lies below `base_dn` and, when given, in one of `containers`.
    """
    fence = Fence(base_dn, tuple(containers))
    if current is not None:
        _refuse_protected(current)
        # AD matches the anchor case-insensitively; so does this check.
        if (current.anchor or "").casefold() != desired.anchor.casefold():
            raise Refused(f"{current.dn} does not carry the anchor {desired.anchor}; e2ad never modifies it")
    if desired.state == "absent":
        if current is None:
            return Plan("skip", None)
        fence.check(current.dn)
        return Plan("delete", current.dn)
    _check_size(desired)

    container = desired.container or default_container
    members, unresolved, warnings = _desired_members(desired.members, nested)
    if current is None:
        return _create(desired, members, unresolved, warnings, fence, container)

    relocation = _relocation(current, desired, container, fence)
    changes = tuple(
        AttributeChange(name, current.values(name), new)
        for name, value in _managed(desired.attributes)
        if (new := _values(value)) != current.values(name)
    )
    to_add = sorted(members - current.members)
    to_remove = sorted(current.members - members)
    update = Plan(
        "update",
        relocation.new_dn if relocation else current.dn,
        relocation=relocation,
        changes=changes,
        members_to_add=_chunks(member_value(guid) for guid in to_add),
        members_to_remove=_chunks(member_value(guid) for guid in to_remove),
        unresolved=unresolved,
        warnings=warnings,
    )
    return update if update.writes else Plan("skip", current.dn, unresolved=unresolved, warnings=warnings)


def member_value(guid: uuid.UUID) -> str:
    """A member value AD resolves by objectGUID, so no member's DN is ever looked up or escaped."""
    return f"<GUID={guid}>"


def protection_reason(group: AdGroup) -> str | None:
    """Why AD's own privileged groups must never be written by e2ad, or None."""
    sid = group.object_sid or ""
    if sid.startswith(BUILTIN_SID_PREFIX):
        return f"{group.dn} is a builtin group ({sid})"
    rid = sid.rsplit("-", 1)[-1]
    if rid.isdigit() and int(rid) in PROTECTED_RIDS:
        return f"{group.dn} is a protected well-known group ({sid})"
    if group.critical_system_object:
        return f"{group.dn} is a critical system object"
    names = {v.casefold() for attribute in ("cn", "sAMAccountName") for v in group.values(attribute)}
    if names & PROTECTED_GROUP_NAMES:
        return f"{group.dn} is a protected group"
    return None


def _check_size(desired: DesiredGroup) -> None:
    count = len({(member.type, member.id) for member in desired.members})
    if count > MAX_MEMBERS:
        raise Refused(
            f"group {desired.group_id} ({desired.anchor}) has {count:,} members, more than the "
            f"{MAX_MEMBERS:,} a provisioned group may have; split it. AD was not changed"
        )


def _refuse_protected(group: AdGroup) -> None:
    if (reason := protection_reason(group)) is not None:
        raise Refused(f"refusing to touch {reason}")


def _create(
    desired: DesiredGroup,
    members: frozenset[uuid.UUID],
    unresolved: tuple[DesiredMember, ...],
    warnings: tuple[str, ...],
    fence: Fence,
    container: str | None,
) -> Plan:
    if container is None:
        raise Refused(f"no target container for {desired.anchor}: set provisioning.target_container")
    cn = _cn(desired)
    for name in (cn, desired.create_only.get("sAMAccountName"), desired.attributes.get("sAMAccountName")):
        if isinstance(name, str) and name.casefold() in PROTECTED_GROUP_NAMES:
            raise Refused(f"refusing to create a group named like the protected group {name!r}")
    target = f"{dns.rdn('CN', cn)},{container}"
    fence.check(target)
    attributes: dict[str, str | int] = {"objectClass": "group", "groupType": UNIVERSAL_SECURITY_GROUP}
    # create_only first, so that a value both flow on create and on update comes from attributes.
    for name, value in (*_managed(desired.create_only), *_managed(desired.attributes)):
        if value not in (None, ""):
            attributes[name] = value  # type: ignore[assignment]
    attributes[ANCHOR_ATTRIBUTE] = desired.anchor
    return Plan(
        "create",
        target,
        create_attributes=attributes,
        members_to_add=_chunks(member_value(guid) for guid in sorted(members)),
        unresolved=unresolved,
        warnings=warnings,
    )


def _relocation(current: AdGroup, desired: DesiredGroup, container: str | None, fence: Fence) -> Relocation | None:
    old_parent = dns.split(current.dn)[1]
    cn = _cn(desired)
    # Compared by value (AD's escaping of the old RDN may differ from ours), and exactly, not
    # case-folded: a case-only rename in Entra is a rename in AD too.
    renamed = current.values("cn") != (cn,)
    moved = container is not None and not dns.same(container, old_parent)
    if not (renamed or moved):
        return None
    relocation = Relocation(current.dn, cn if renamed else None, container if moved else None)
    # Only where it goes: our group moved out of the fence by hand is moved back, as Cloud Sync does.
    fence.check(relocation.new_dn)
    return relocation


@dataclass(frozen=True)
class Fence:
    """Where the writer may write: below the base DN, and in one of the containers when there are any."""

    base_dn: str
    containers: tuple[str, ...] = ()

    def check(self, target: str) -> None:
        if not dns.is_within(target, self.base_dn):
            raise Refused(f"{target} is outside the base DN {self.base_dn}; e2ad writes nothing there")
        if dns.is_within(target, f"CN=Builtin,{self.base_dn}"):
            raise Refused(f"{target} is in CN=Builtin; e2ad never writes AD's builtin container")
        if self.containers and not any(dns.is_within(target, c) for c in self.containers):
            raise Refused(
                f"{target} is outside the containers e2ad writes in ({'; '.join(self.containers)}); "
                "list its container in provisioning.containers to allow it"
            )


def _cn(desired: DesiredGroup) -> str:
    cn = next((value for name, value in desired.attributes.items() if name.lower() == "cn"), None)
    if not isinstance(cn, str) or not cn.strip():
        raise Refused(f"the desired state of {desired.anchor} has no cn")
    if (length := utf16_length(cn)) > MAX_CN:
        raise Refused(
            f"the cn of {desired.anchor} is {length} UTF-16 code units long, AD allows {MAX_CN}: {cn!r}; "
            "shorten it in the cn mapping (the default keeps 51 characters of displayName)"
        )
    return cn


def _desired_members(
    members: Sequence[DesiredMember], nested: Mapping[str, uuid.UUID]
) -> tuple[frozenset[uuid.UUID], tuple[DesiredMember, ...], tuple[str, ...]]:
    guids: set[uuid.UUID] = set()
    unresolved: list[DesiredMember] = []
    warnings: list[str] = []
    for member in members:
        if member.type == "group":
            guid = nested.get(member.anchor or "")
            if guid is None:
                unresolved.append(member)
                warnings.append(f"nested group {member.id} ({member.anchor}) is not in AD yet; not added")
            else:
                guids.add(guid)
            continue
        try:
            guids.add(uuid.UUID(member.object_guid or ""))
        except ValueError:
            warnings.append(f"user {member.id} has no valid objectGUID ({member.object_guid!r}); not added")
    return frozenset(guids), tuple(unresolved), tuple(warnings)


def _managed(attributes: Mapping[str, AttributeValue]) -> Iterable[tuple[str, AttributeValue]]:
    return ((name, value) for name, value in attributes.items() if name.lower() not in _NOT_MODIFIABLE)


def _values(value: AttributeValue) -> Values:
    # An empty string cannot be stored in LDAP: like None it means "no value" (design: an empty
    # description removes the attribute).
    return () if value is None or value == "" else (str(value),)


def _chunks(values: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    items = list(values)
    return tuple(tuple(items[i : i + MEMBER_CHUNK]) for i in range(0, len(items), MEMBER_CHUNK))
