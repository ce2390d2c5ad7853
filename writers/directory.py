"""LDAP reads and writes for one writer: find a group by its anchor, resolve nested anchors, apply a plan.

Every LDAP outcome is translated into writers.errors: connection-level failures and busy or
unavailable DCs become DirectoryUnavailable, anything AD rejects about one object becomes an
ObjectError naming that object. Methods are blocking; the service runs them on the writer's
own LDAP thread.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_bytes, escape_filter_chars

from schemas.config import AdSettings
from writers import dn as dns
from writers.connection import close, connect
from writers.errors import DirectoryUnavailable, ForeignObjectError, ObjectError, WrittenMeanwhile
from writers.reconcile import ANCHOR_ATTRIBUTE, MEMBER_CHUNK, AdGroup, AttributeChange, Plan

log = logging.getLogger(__name__)

EXTENDED_DN_CONTROL = ("1.2.840.113556.1.4.529", False, None)
SUCCESS = 0
TIME_LIMIT_EXCEEDED = 3
NO_SUCH_OBJECT = 32
BUSY = 51
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53
ENTRY_ALREADY_EXISTS = 68
# Members are read in explicit ranges of this many values: Windows AD caps an unranged read at
# MaxValRange (1500 by default) and answers member;range=0-1499 anyway, Samba returns every value
# unless asked for a range but honours one (samba-ad-dc.md §6). Asking explicitly gives both DCs
# one code path, so the ranged read runs against the real DC in the tests.
MEMBER_RANGE = 1500
# The DC, not the object, is the problem: retry the same records after a reconnect.
TRANSIENT_CODES = frozenset({TIME_LIMIT_EXCEEDED, BUSY, UNAVAILABLE})
# What the writer reads of a group besides the attributes the desired state manages.
GROUP_ATTRIBUTES = (
    "cn", "description", "displayName", "adminDescription", "groupType", "sAMAccountName",
    f"member;range=0-{MEMBER_RANGE - 1}", "objectGUID", "objectSid", "isCriticalSystemObject", ANCHOR_ATTRIBUTE,
)  # fmt: skip
_BINARY = frozenset({"objectguid", "objectsid", "member"})
_RANGE = re.compile(r"^member;range=(\d+)-(\d+|\*)$", re.IGNORECASE)
_ANCHORS_PER_SEARCH = 100  # keeps the OR filter of a nested-group resolution small


@dataclass
class Applied:
    """What an apply got done, kept even when a later step fails (for the provisioning log)."""

    members_added: int = 0
    members_removed: int = 0
    created: str | None = None  # the DN, once the group has been created
    done: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Named:
    """An AD object as `e2ad provision` shows a member: its DN and its displayName (else its cn)."""

    dn: str
    name: str | None


@dataclass(frozen=True)
class Occupant:
    """The object already at a DN, and the anchor it carries (None: not one of e2ad's groups)."""

    dn: str
    anchor: str | None


class Directory:
    """One writer's LDAP connection to AD, and everything it reads and writes there."""

    def __init__(self, settings: AdSettings, connector: Callable[[AdSettings], ldap3.Connection] = connect) -> None:
        if not settings.base_dn:
            raise ValueError("ad.base_dn is required: the writer searches anchors and writes only below it")
        self.settings = settings
        self.base_dn: str = settings.base_dn
        self._connector = connector
        self._connection: ldap3.Connection | None = None

    # -- connection ---------------------------------------------------------------------------
    def open(self) -> None:
        if self._connection is None:
            self._connection = self._connector(self.settings)

    @property
    def connected(self) -> bool:
        """Bound to the DC (a connection that failed since is closed, and opened again by the next write)."""
        return self._connection is not None

    def close(self) -> None:
        if self._connection is not None:
            close(self._connection)
            self._connection = None

    def reconnect(self) -> None:
        self.close()
        self.open()

    # -- reads --------------------------------------------------------------------------------
    def find_group(self, anchor: str, managed: Iterable[str] = ()) -> AdGroup | None:
        """The group carrying `anchor` below the base DN, with its managed attributes and members."""
        return only_group(anchor, self.find_groups([anchor], managed))

    def find_groups(self, anchors: Iterable[str], managed: Iterable[str] = ()) -> dict[str, list[AdGroup]]:
        """The groups carrying each anchor (case-folded) below the base DN, read for a whole batch.

        One search per _ANCHORS_PER_SEARCH anchors instead of one per group: the writer's largest
        cost besides the writes themselves (docs/benchmarks.md).
        """
        # member is read in ranges only; a plain `member` as well would fetch every value twice.
        extra = {name for name in managed if name.lower() != "member"}
        attributes = sorted({*GROUP_ATTRIBUTES, *extra}, key=str.lower)
        wanted = sorted(set(anchors))
        found: dict[str, list[AdGroup]] = {anchor.casefold(): [] for anchor in wanted}
        for start in range(0, len(wanted), _ANCHORS_PER_SEARCH):
            chunk = wanted[start : start + _ANCHORS_PER_SEARCH]
            what = f"the group with anchor {chunk[0]}" if len(chunk) == 1 else f"{len(chunk)} groups by anchor"
            for entry in self._search(
                self.base_dn, _anchor_filter(chunk), attributes, ldap3.SUBTREE, what=what, extended_dn=True
            ):
                group = self._group(entry)
                found.setdefault(str(group.anchor).casefold(), []).append(group)
        return found

    def resolve_groups(self, anchors: Iterable[str]) -> dict[str, uuid.UUID]:
        """objectGUIDs of the groups carrying these anchors; anchors not (uniquely) in AD are left out."""
        wanted = sorted(set(anchors))
        found: dict[str, list[uuid.UUID]] = {}
        for start in range(0, len(wanted), _ANCHORS_PER_SEARCH):
            chunk = wanted[start : start + _ANCHORS_PER_SEARCH]
            entries = self._search(
                self.base_dn,
                _anchor_filter(chunk),
                ["objectGUID", ANCHOR_ATTRIBUTE],
                ldap3.SUBTREE,
                what="nested groups",
            )
            for entry in entries:
                anchor = _single(entry["attributes"].get(ANCHOR_ATTRIBUTE))
                found.setdefault(str(anchor).casefold(), []).append(_guid(entry))
        resolved = {}
        for anchor in wanted:
            guids = found.get(anchor.casefold(), [])
            if len(guids) == 1:
                resolved[anchor] = guids[0]
            elif guids:
                log.warning("the anchor %s is on %d objects; the nested group is not resolved", anchor, len(guids))
        return resolved

    def describe(self, guids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Named]:
        """The DN and name of each object by objectGUID (found below the base DN), to show members by name."""
        wanted = sorted(set(guids))
        named: dict[uuid.UUID, Named] = {}
        for start in range(0, len(wanted), _ANCHORS_PER_SEARCH):
            chunk = wanted[start : start + _ANCHORS_PER_SEARCH]
            terms = "".join(f"(objectGUID={escape_bytes(guid.bytes_le)})" for guid in chunk)
            for entry in self._search(
                self.base_dn, f"(|{terms})", ["objectGUID", "displayName", "cn"], ldap3.SUBTREE, what="members by GUID"
            ):
                attributes = entry["attributes"]
                name = _single(attributes.get("displayName")) or _single(attributes.get("cn"))
                named[_guid(entry)] = Named(entry["dn"], str(name) if name else None)
        return named

    def occupant(self, target: str) -> Occupant | None:
        """The object at `target`, with its anchor, or None: what a create or a rename there would collide with."""
        entries = self._search(target, "(objectClass=*)", [ANCHOR_ATTRIBUTE], ldap3.BASE, what=target)
        if not entries:
            return None
        anchor = _single(entries[0]["attributes"].get(ANCHOR_ATTRIBUTE))
        return Occupant(dns.strip_extended(entries[0]["dn"]), str(anchor) if anchor else None)

    # -- writes -------------------------------------------------------------------------------
    def apply(self, plan: Plan, current: AdGroup | None, applied: Applied) -> None:
        """Carry out a plan. Raises ObjectError at the first step AD rejects; `applied` records the rest."""
        if plan.action == "create":
            self._create(plan, applied)
            return
        assert current is not None, "only a create has no AD object"
        # Address the object by objectGUID: immune to renames, and no DN escaping involved.
        target = f"<GUID={current.object_guid}>"
        if plan.action == "delete" or plan.relocation is not None:
            # A delete cannot be undone and a rename or move changes which DN the object holds, so both
            # re-read the anchor right before. Attribute and member modifies skip it: they go by the
            # objectGUID find_group read moments ago on this connection, a GUID never passes to another
            # object, and a re-check would leave the same race between itself and the write.
            self._recheck_anchor(target, current)
        if plan.action == "delete":
            self._write("delete", current.dn, lambda c: c.delete(target))
            applied.done.append(f"deleted {current.dn}")
            return
        if plan.relocation is not None:
            relocation = plan.relocation
            result = self._call(
                "modify_dn",
                relocation.old_dn,
                # Always with the parent: Samba answers 32 to a <GUID=…> modify_dn without new_superior (measured).
                lambda c: c.modify_dn(target, relocation.new_rdn, new_superior=relocation.parent),
            )
            if result["result"] == ENTRY_ALREADY_EXISTS:
                self._raise_conflict(relocation.new_dn, current.anchor, result)
            _check(result, "rename/move", relocation.old_dn)
            applied.done.append(f"moved {relocation.old_dn} to {relocation.new_dn}")
        name = plan.dn or target
        if not self._modify_at_once(target, name, plan, applied):
            self._modify_step_by_step(target, name, plan, applied)

    def _modify_at_once(self, target: str, name: str, plan: Plan, applied: Applied) -> bool:
        """One modify with the attribute changes and both member operations; False if not sent or rejected.

        Only when the members fit one chunk, and only when the plan has more than one operation (a
        single one is already one modify on the step-by-step path). AD applies a modify entirely or
        not at all, so after any rejection the step-by-step path starts from the same AD state and
        sorts it out: members already there or gone and missing members by halving, anything else
        reported by the step it belongs to, as before.
        """
        member_values = sum(len(chunk) for chunk in (*plan.members_to_add, *plan.members_to_remove))
        operations = bool(plan.changes) + len(plan.members_to_add) + len(plan.members_to_remove)
        if member_values > MEMBER_CHUNK or operations < 2:
            return False
        modification = _attribute_modification(plan.changes)
        members = [
            *((ldap3.MODIFY_ADD, list(chunk)) for chunk in plan.members_to_add),
            *((ldap3.MODIFY_DELETE, list(chunk)) for chunk in plan.members_to_remove),
        ]
        if members:
            modification["member"] = members
        if self._call("modify", name, lambda c: c.modify(target, modification))["result"] != SUCCESS:
            return False
        if plan.changes:
            applied.done.append(_updated(plan.changes))
        applied.members_added += sum(len(chunk) for chunk in plan.members_to_add)
        applied.members_removed += sum(len(chunk) for chunk in plan.members_to_remove)
        return True

    def _modify_step_by_step(self, target: str, name: str, plan: Plan, applied: Applied) -> None:
        """The attribute changes, then each member chunk in a modify of its own, halving rejected chunks."""
        if plan.changes:
            modification = _attribute_modification(plan.changes)
            self._write("modify", name, lambda c: c.modify(target, modification))
            applied.done.append(_updated(plan.changes))
        for chunk in plan.members_to_add:
            applied.members_added += self._change_members(target, name, ldap3.MODIFY_ADD, chunk, applied)
        for chunk in plan.members_to_remove:
            applied.members_removed += self._change_members(target, name, ldap3.MODIFY_DELETE, chunk, applied)

    def _create(self, plan: Plan, applied: Applied) -> None:
        """Add the group with its first chunk of members in the add itself, the rest in member modifies."""
        assert plan.dn is not None
        target, attributes, chunks = plan.dn, plan.create_attributes, plan.members_to_add
        inline = chunks[0] if chunks else ()
        result = self._add(target, attributes, inline)
        if inline and result["result"] not in (SUCCESS, ENTRY_ALREADY_EXISTS):
            # AD rejects the whole add for one member value (32 for a member that does not exist).
            # Added without members, the group gets them through the modifies that halve such a
            # chunk down to the value and warn; a rejection about the group itself recurs on this
            # add and is reported as before.
            inline = ()
            result = self._add(target, attributes, inline)
        if result["result"] == ENTRY_ALREADY_EXISTS:
            self._raise_conflict(target, attributes.get(ANCHOR_ATTRIBUTE), result, attributes.get("sAMAccountName"))
        _check(result, "create", target)
        applied.created = target
        applied.done.append(f"created {target}")
        applied.members_added += len(inline)
        for chunk in chunks[1:] if inline else chunks:
            applied.members_added += self._change_members(target, target, ldap3.MODIFY_ADD, chunk, applied)

    def _add(self, target: str, attributes: Mapping[str, Any], members: tuple[str, ...]) -> Mapping[str, Any]:
        values = {name: value for name, value in attributes.items() if name != "objectClass"}
        if members:
            values["member"] = list(members)
        return self._call("add", target, lambda c: c.add(target, attributes["objectClass"], values))

    def _raise_conflict(
        self, target: str, anchor: str | None, result: Mapping[str, Any], sam_account_name: object = None
    ) -> None:
        """entryAlreadyExists: name the object in the way when it is not ours, say so when it is ours
        (another writer's, WrittenMeanwhile), name the holder of the sAMAccountName a create collided
        with, else report AD's reason."""
        occupant = self.occupant(target)
        if occupant is not None:
            theirs = occupant.anchor
            if theirs is None or theirs.casefold() != (anchor or "").casefold():
                raise ForeignObjectError(
                    f"{target} already exists without the anchor {anchor} (it has {theirs!r}); "
                    "e2ad never overwrites it",
                    code=ENTRY_ALREADY_EXISTS,
                    dn=target,
                )
            raise WrittenMeanwhile(
                f"{target} got the anchor {anchor} from another writer", code=ENTRY_ALREADY_EXISTS, dn=target
            )
        # Nothing at the DN: another unique value collided. The sAMAccountName is unique in the domain
        # (AD enforces it), and a mapping can give two groups the same one: name it and who has it.
        if isinstance(sam_account_name, str):
            holders = self._search(
                self.base_dn,
                f"(sAMAccountName={escape_filter_chars(sam_account_name)})",
                ["objectGUID"],
                ldap3.SUBTREE,
                what=f"the holder of sAMAccountName {sam_account_name}",
            )
            if holders:
                raise ObjectError(
                    f"create {target} failed: sAMAccountName {sam_account_name!r} is already used in the domain "
                    f"by {dns.strip_extended(holders[0]['dn'])}; AD requires it unique: map sAMAccountName "
                    f"to a value unique per group ({_describe(result)})",
                    code=ENTRY_ALREADY_EXISTS,
                    dn=target,
                )
        _check(result, "create or rename", target)

    def _recheck_anchor(self, target: str, current: AdGroup) -> None:
        """Right before writing: the object must still carry our anchor (someone may have taken it off)."""
        entries = self._search(target, "(objectClass=*)", [ANCHOR_ATTRIBUTE], ldap3.BASE, what=current.dn)
        if not entries:
            raise ObjectError(
                f"{current.dn} disappeared before it could be written", code=NO_SUCH_OBJECT, dn=current.dn
            )
        anchor = _single(entries[0]["attributes"].get(ANCHOR_ATTRIBUTE))
        if anchor is None or str(anchor).casefold() != (current.anchor or "").casefold():
            raise ObjectError(
                f"{current.dn} no longer carries the anchor {current.anchor}; left untouched", dn=current.dn
            )

    def _change_members(self, target: str, name: str, operation: str, chunk: tuple[str, ...], applied: Applied) -> int:
        """Add or remove one chunk of members; returns how many values changed.

        AD rejects the whole modify when one value is already there (68 on add), already gone
        (53 on delete), or when one added member does not exist (32). Such a chunk is split in
        halves down to the offending values, so one stale value never fails the group and costs
        about 2·log2(chunk) modifies rather than one per value.
        """
        result = self._modify_members(target, name, operation, chunk)
        if result["result"] == SUCCESS:
            return len(chunk)
        self._tolerate(result, operation, name, chunk)
        if result["result"] == NO_SUCH_OBJECT:
            self._recheck_exists(target, name)  # 32 may be about the group itself, not a member
        return self._split(target, name, operation, chunk, result, applied)

    def _split(
        self,
        target: str,
        name: str,
        operation: str,
        chunk: tuple[str, ...],
        rejected: Mapping[str, Any],
        applied: Applied,
    ) -> int:
        """Apply the halves of a chunk AD rejected for a tolerated reason; returns how many values changed."""
        if len(chunk) == 1:
            if rejected["result"] == NO_SUCH_OBJECT:
                applied.warnings.append(f"member {chunk[0]} does not exist in AD; not added to {name}")
            return 0  # already there, or already gone
        changed = 0
        middle = len(chunk) // 2
        for half in (chunk[:middle], chunk[middle:]):
            result = self._modify_members(target, name, operation, half)
            if result["result"] == SUCCESS:
                changed += len(half)
            else:
                self._tolerate(result, operation, name, half)
                changed += self._split(target, name, operation, half, result, applied)
        return changed

    def _modify_members(self, target: str, name: str, operation: str, values: tuple[str, ...]) -> Mapping[str, Any]:
        return self._call("modify", name, lambda c: c.modify(target, {"member": [(operation, list(values))]}))

    @staticmethod
    def _tolerate(result: Mapping[str, Any], operation: str, name: str, values: tuple[str, ...]) -> None:
        """Raise ObjectError unless AD rejected the member change for a reason a split resolves."""
        adding = operation == ldap3.MODIFY_ADD
        tolerated = (ENTRY_ALREADY_EXISTS, NO_SUCH_OBJECT) if adding else (UNWILLING_TO_PERFORM,)
        if result["result"] not in tolerated:
            verb = "add members to" if adding else "remove members from"
            _check(result, f"{verb} ({values[0]})" if len(values) == 1 else verb, name)

    def _recheck_exists(self, target: str, name: str) -> None:
        if not self._search(target, "(objectClass=*)", ["objectGUID"], ldap3.BASE, what=name):
            raise ObjectError(f"{name} disappeared while its members were written", code=NO_SUCH_OBJECT, dn=name)

    def _write(self, operation: str, name: str, call: Callable[[ldap3.Connection], Any]) -> None:
        _check(self._call(operation, name, call), operation, name)

    # -- plumbing -----------------------------------------------------------------------------
    def _group(self, entry: Mapping[str, Any]) -> AdGroup:
        group_dn = dns.strip_extended(entry["dn"])
        attributes = dict(entry["attributes"])
        member_values = self._member_values(group_dn, entry, attributes)
        members = frozenset(_member_guid(value, group_dn) for value in member_values)
        raw_sid = entry["raw_attributes"].get("objectSid")
        return AdGroup(
            dn=group_dn,
            object_guid=_guid(entry),
            anchor=_single(attributes.get(ANCHOR_ATTRIBUTE)),
            attributes={
                name.lower(): tuple(str(v) for v in values)
                for name, values in attributes.items()
                if name.lower() not in _BINARY
            },
            members=members,
            object_sid=format_sid(raw_sid[0]) if raw_sid else None,
            critical_system_object="TRUE" in [str(v).upper() for v in attributes.get("isCriticalSystemObject", [])],
        )

    def _member_values(self, group_dn: str, entry: Mapping[str, Any], attributes: dict[str, Any]) -> list[str]:
        """Every member value, range by range (member;range=0-1499, 1500-2999, … until AD answers `*`).

        Takes the member attributes out of `attributes`. Each further range is read by objectGUID
        with the extended-DN control, so its values carry GUIDs like the first. A read that stops
        short can only make the plan remove less and re-add values AD then tolerates (68); it never
        removes a member that should stay.
        """
        values = list(attributes.pop("member", []))  # a server that ignores the range option
        answer = _pop_range(attributes)
        while answer is not None:
            values += answer.values
            if answer.last is None:
                break
            first = answer.last + 1
            entries = self._search(
                f"<GUID={_guid(entry)}>",
                "(objectClass=*)",
                [f"member;range={first}-{first + MEMBER_RANGE - 1}"],
                ldap3.BASE,
                what=f"the members of {group_dn} from {first}",
                extended_dn=True,
            )
            if not entries:
                raise ObjectError(
                    f"{group_dn} disappeared while its members were read", code=NO_SUCH_OBJECT, dn=group_dn
                )
            answer = _pop_range(dict(entries[0]["attributes"]))
        return values

    def _search(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        scope: str,
        *,
        what: str,
        extended_dn: bool = False,
    ) -> list[dict[str, Any]]:
        controls = [EXTENDED_DN_CONTROL] if extended_dn else None
        result, response = self._call_search(
            what, lambda c: c.search(base, search_filter, scope, attributes=attributes, controls=controls)
        )
        if result["result"] == NO_SUCH_OBJECT and scope == ldap3.BASE:
            return []
        _check(result, "read", what)
        return [entry for entry in response or () if entry.get("type") == "searchResEntry"]

    def _call(self, operation: str, name: str, call: Callable[[ldap3.Connection], Any]) -> Mapping[str, Any]:
        return self._call_search(f"{operation} {name}", call)[0]

    def _call_search(
        self, what: str, call: Callable[[ldap3.Connection], Any]
    ) -> tuple[Mapping[str, Any], list[dict[str, Any]] | None]:
        self.open()
        assert self._connection is not None
        try:
            _, result, response, _ = call(self._connection)
        except (LDAPCommunicationError, LDAPResponseTimeoutError) as exc:
            self.close()  # broken: the next call reconnects
            raise DirectoryUnavailable(f"lost the DC at {self.settings.url} during {what}: {exc}") from exc
        except LDAPException as exc:
            raise ObjectError(f"ldap3 refused the request for {what}: {exc}") from exc
        if result["result"] in TRANSIENT_CODES:
            raise DirectoryUnavailable(f"the DC at {self.settings.url} answered {_describe(result)} to {what}")
        return result, response


def _attribute_modification(changes: Iterable[AttributeChange]) -> dict[str, list[tuple[str, list[str]]]]:
    return {
        change.name: [(ldap3.MODIFY_REPLACE, list(change.new)) if change.new else (ldap3.MODIFY_DELETE, [])]
        for change in changes
    }


def _updated(changes: Iterable[AttributeChange]) -> str:
    return "updated " + ", ".join(change.name for change in changes)


def _check(result: Mapping[str, Any], operation: str, name: str) -> None:
    if result["result"] != SUCCESS:
        raise ObjectError(f"{operation} {name} failed: {_describe(result)}", code=result["result"], dn=name)


def _describe(result: Mapping[str, Any]) -> str:
    message = str(result.get("message") or "").strip()
    return f"{result['result']} {result.get('description')}" + (f" ({message})" if message else "")


@dataclass(frozen=True)
class _RangeAnswer:
    values: list[str]
    last: int | None  # index of the last value returned; None: AD said `*`, nothing follows


def _pop_range(attributes: dict[str, Any]) -> _RangeAnswer | None:
    """Take the member;range=a-b attribute out of a search answer; None if AD sent none."""
    name = next((name for name in attributes if _RANGE.match(name)), None)
    if name is None:
        return None
    last = _RANGE.match(name).group(2)  # type: ignore[union-attr]
    return _RangeAnswer(list(attributes.pop(name)), None if last == "*" else int(last))


def only_group(anchor: str, found: Mapping[str, list[AdGroup]]) -> AdGroup | None:
    """The one group carrying `anchor` in what find_groups read; an anchor on several objects is an error."""
    groups = found.get(anchor.casefold(), [])
    if len(groups) > 1:
        dns_found = "; ".join(group.dn for group in groups)
        raise ObjectError(f"the anchor {anchor} is on {len(groups)} objects ({dns_found}); none is touched")
    return groups[0] if groups else None


def _anchor_filter(anchors: list[str]) -> str:
    terms = "".join(f"({ANCHOR_ATTRIBUTE}={escape_filter_chars(anchor)})" for anchor in anchors)
    return f"(&(objectClass=group)(|{terms}))"


def _guid(entry: Mapping[str, Any]) -> uuid.UUID:
    return uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0])


def _member_guid(value: str, group_dn: str) -> uuid.UUID:
    """objectGUID of a member value read with the extended-DN control.

    Samba (and AD without a control value) writes the GUID as the hex of its bytes_le; AD with
    control value 1 writes the dashed string form.
    """
    text = dns.extended_guid(value)
    if text is None:
        raise ObjectError(f"member value {value!r} of {group_dn} has no <GUID=…> part", dn=group_dn)
    return uuid.UUID(bytes_le=bytes.fromhex(text)) if len(text) == 32 else uuid.UUID(text)


def _single(values: Any) -> Any:
    if isinstance(values, list):
        return values[0] if values else None
    return values
