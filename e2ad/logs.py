"""`e2ad logs`: which provisioning-log records (ad.results) an operator asked for, and how they read.

Pure: the command reads the topic and the group names (e2ad/cli_logs.py); this module parses the
options, selects the records, resolves a display name to group ids, recommends a fix for the LDAP
errors the writers record, and renders records the way Entra's provisioning logs show them.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ldap3.core import results as ldap
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from schemas.results import Action, ProvisioningResult, Status
from writers import dn as dns

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """A point in time: `30s`, `15m`, `1h`, `2d` before `now`, or ISO 8601 (UTC when it names no zone).

    Raises ValueError saying what is accepted.
    """
    value = text.strip()
    if relative := _RELATIVE.match(value):
        return now - dt.timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30s, 15m, 1h, 2d) nor an ISO 8601 time (2026-12-02T11:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def is_group_id(text: str) -> bool:
    """Whether --group names a group by its Entra object id (a GUID) rather than by its display name."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Selection:
    """Which records are shown: every condition given must hold (None or empty: any)."""

    group_ids: frozenset[str] | None = None
    actions: frozenset[Action] = frozenset()
    statuses: frozenset[Status] = frozenset()
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def by_content(self) -> bool:
        """Whether a record can be left out for what it says, not only for being older than --since."""
        return bool(self.group_ids is not None or self.actions or self.statuses or self.until)

    def __call__(self, result: ProvisioningResult) -> bool:
        return (
            (self.group_ids is None or result.group_id.lower() in self.group_ids)
            and (not self.actions or result.action in self.actions)
            and (not self.statuses or result.status in self.statuses)
            and (self.since is None or result.at >= self.since)
            and (self.until is None or result.at < self.until)
        )


@dataclass(frozen=True)
class Entry:
    """A record of the log as read: parsed, and its value as it is on the topic (what --json prints)."""

    result: ProvisioningResult
    value: bytes


def newest(entries: Iterable[Entry], limit: int) -> list[Entry]:
    """The newest `limit` entries, oldest first (as a log reads, and as --follow goes on)."""
    return sorted(entries, key=lambda entry: entry.result.at)[-limit:]


def start_offset(beginning: int, end: int, since: int | None, tail: int | None) -> int:
    """Where to read a partition from: its beginning, or the broker's offset for --since (`since`);
    with `tail`, no more than that many records before its end."""
    start = beginning if since is None else max(beginning, since)
    return start if tail is None else max(start, end - tail)


def group_names(desired: Mapping[str, str | None], entries: Iterable[Entry]) -> dict[str, str]:
    """Each group's display name: its latest desired state's, else the newest one the log wrote to AD.

    The log knows the names of groups deleted since, which ad.desired no longer carries.
    """
    names: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e.result.at):
        for change in entry.result.modified:
            if change.name == "displayName" and isinstance(change.new, str):
                names[entry.result.group_id.lower()] = change.new
    names.update({group_id.lower(): name for group_id, name in desired.items() if name})
    return names


def groups_named(name: str, names: Mapping[str, str]) -> list[str]:
    """The ids of the groups whose display name is `name`, case-insensitively and exactly."""
    wanted = name.strip().casefold()
    return sorted(group_id for group_id, known in names.items() if known.casefold() == wanted)


# What an operator does about the LDAP result codes (RFC 4511) the writers record on a failure.
# Busy (51), unavailable (52) and time limit (3) never reach the log: the writer reconnects and
# retries those records instead (writers/directory.py TRANSIENT_CODES).
MAPPINGS = "fix the attribute mappings (`e2ad config plan FILE`, then `e2ad config apply FILE`)"
LIMITS = "the DC's LDAP policy (MaxPageSize, MaxResultSetSize, MaxValRange) limits this read: raise the limit"
RECOMMENDATIONS: dict[int, str] = {
    ldap.RESULT_REFERRAL: (
        "{dn} is outside the naming context of the DC e2ad writes to: set ad.base_dn and the provisioning"
        " containers to the DC's own domain, or point ad.url at a DC of that domain"
    ),
    ldap.RESULT_CONSTRAINT_VIOLATION: (
        "AD's constraints refuse a value of {dn} (a sAMAccountName with a character AD refuses or over 20"
        f" characters, a value out of its attribute's range): {MAPPINGS}"
    ),
    ldap.RESULT_ATTRIBUTE_OR_VALUE_EXISTS: "AD has that value already: {retry} reads AD again",
    ldap.RESULT_INVALID_ATTRIBUTE_SYNTAX: f"a value of {{dn}} does not fit its attribute's syntax or size: {MAPPINGS}",
    ldap.RESULT_NO_SUCH_OBJECT: (
        "{container} does not exist (or a member or the group was removed meanwhile): create the container,"
        " or set provisioning.target_container to one that exists"
    ),
    ldap.RESULT_INVALID_DN_SYNTAX: f"{{dn}} is not a valid DN: {MAPPINGS} (the cn) or provisioning.target_container",
    ldap.RESULT_INSUFFICIENT_ACCESS_RIGHTS: (
        "grant the e2ad account (ad.bind_dn) the right to create, delete and write group objects on {container}"
    ),
    ldap.RESULT_UNWILLING_TO_PERFORM: (
        "AD will not make this change (a groupType it does not accept, a system attribute, a member that is"
        f" not there): {MAPPINGS}"
    ),
    ldap.RESULT_NAMING_VIOLATION: f"{{dn}} cannot be placed there (a group needs an OU or container): {MAPPINGS}",
    ldap.RESULT_OBJECT_CLASS_VIOLATION: f"a mapped attribute is not allowed on a group, or one is missing: {MAPPINGS}",
    ldap.RESULT_NOT_ALLOWED_ON_NON_LEAF: "{dn} has child objects: move or remove them, then {retry}",
    ldap.RESULT_ENTRY_ALREADY_EXISTS: (
        "an object without this group's anchor already has its name at {dn} (or its sAMAccountName elsewhere):"
        f" rename or remove that object, or {MAPPINGS}; e2ad never takes over an object it did not create"
    ),
    ldap.RESULT_SIZE_LIMIT_EXCEEDED: LIMITS,
    ldap.RESULT_ADMIN_LIMIT_EXCEEDED: LIMITS,
}


def recommendation(result: ProvisioningResult) -> str | None:
    """What to do about a failed record, for the LDAP errors and the refusals the log records; None otherwise."""
    if result.status != "failure":
        return None
    if result.error_code is not None:
        advice = RECOMMENDATIONS.get(result.error_code)
        if advice is None:
            return None
        dn = result.dn or "the group's DN"
        container = dns.split(result.dn)[1] if result.dn and result.action == "create" else dn
        return advice.format(dn=dn, container=container, retry=_retry(result))
    if any(step.name == "processing" and step.status == "failure" for step in result.steps):
        return MAPPINGS  # the processors' mapping failed: nothing was sent to AD
    return f"e2ad refused to write this change (see the error): fix the cause, then {_retry(result)}"


def _retry(result: ProvisioningResult) -> str:
    return f"`e2ad provision {result.group_id} --apply`"


def render(entries: Sequence[Entry], names: Mapping[str, str], console: Console) -> None:
    """Each record as Entra shows one: identity, action and status, the steps, the modified properties,
    and for a failure the error and what to do about it. Aligned columns on a terminal; elsewhere one
    unwrapped line per fact, for grep."""
    for entry in entries:
        result = entry.result
        name = names.get(result.group_id.lower()) or "(name unknown)"
        header = f"{_time(result.at)}  {result.action} {result.status}  {name} {result.group_id}"
        console.print(Text(header, style=_style(result.status)), soft_wrap=not console.is_terminal)
        rows = details(result)
        if console.is_terminal:
            table = Table(Column(no_wrap=True, style="bold"), Column(overflow="fold"), show_header=False, box=None)
            for label, text in rows:
                table.add_row(label, text)
            console.print(table)
        else:
            width = max(len(label) for label, _ in rows)
            for label, text in rows:
                console.print(f"  {label:<{width}}  {text}", soft_wrap=True)
        console.print()


def details(result: ProvisioningResult) -> list[tuple[str, str]]:
    """The facts of one record below its header line, labelled."""
    rows = [("dn", result.dn or "-")]
    rows += [(f"step {step.name}", f"{step.status}: {step.description}") for step in result.steps]
    rows += [(f"modified {change.name}", f"{_value(change.old)} → {_value(change.new)}") for change in result.modified]
    if result.members_added or result.members_removed:
        rows.append(("members", f"+{result.members_added} added, -{result.members_removed} removed"))
    rows += [("warning", warning) for warning in result.warnings]
    if result.status == "failure":
        code = f"LDAP {result.error_code}: " if result.error_code is not None else ""
        rows.append(("error", f"{code}{result.error_message or '-'}"))
        if advice := recommendation(result):
            rows.append(("recommendation", advice))
    rows.append(("decided by", f"{result.writer or 'processors'} in {result.duration_ms:g} ms"))
    return rows


def _value(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _style(status: Status) -> str:
    return {"failure": "bold red", "warning": "yellow", "success": "green"}.get(status, "")


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
