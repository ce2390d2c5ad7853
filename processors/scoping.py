"""Which Entra groups are provisioned: Cloud Sync's security clause, then scope.mode, then the scoping filters.

A group is in scope when, in this order (entra-provisioning.md §1.1, §1.2):
1. the always-on security clause holds: `securityEnabled IS TRUE AND dirSyncEnabled IS FALSE AND
   mailEnabled IS FALSE` (dirSyncEnabled is Graph's onPremisesSyncEnabled, null for groups never
   synced from AD), and it is not a Microsoft 365 group;
2. with `scope.mode: selected`, its object id is one of `scope.groups` (GUIDs compared case-insensitively);
3. some scoping filter holds (filters are OR-ed), that is all of its clauses (AND-ed); no filter holds
   for every group.

How a clause reads an attribute (docs/configuration.md has the table):
- Null, absent and the empty string are alike: every operator is false on them, NOT EQUALS, NOT REGEX
  MATCH and `!&` too, except IS NULL (true) — Cloud Sync's "clauses return false if the value is
  null/empty".
- A multi-valued (list) or object value makes every operator false, IS NULL included: Cloud Sync's
  filters do not support multi-valued attributes. Filtering on one Graph has as such is refused at load.
- The string operators compare ordinally and case-sensitively the attribute's text as .NET prints it:
  a Boolean is "True" or "False", an integer its digits.
- IS TRUE / IS FALSE: the JSON Boolean, or a string that .NET's Boolean.Parse reads as one ("true",
  " FALSE "), since a String directory extension may hold the flag.
- GREATER_THAN(_OR_EQUALS): an integer attribute, or a string of digits; anything else is false.
- INCLUDES: the attribute contains the value; `&`: the attribute occurs in the value (the documented
  "evaluated attribute exists in the input string value", a substring test: `&` "Sales,Marketing"
  holds for "Sales" and for "Marketing"); `!&`: it does not occur; ENDS_WITH: the attribute ends with it.
- REGEX MATCH: .NET's Regex.IsMatch (a match anywhere), in the .NET dialect of
  processors/expressions/dotnet_regex.py and under its match timeout; a match that times out makes
  REGEX MATCH and NOT REGEX MATCH both false, like a null, with the timeout in the reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.expressions import dotnet_regex
from schemas.config import INTEGER, ScopeClause, ScopeSettings, Settings
from schemas.graph import (
    COMPLEX_GROUP_PROPERTIES,
    GROUP_PROPERTIES,
    GROUP_SELECT,
    MULTI_VALUED_GROUP_PROPERTIES,
    is_directory_extension,
)

# An attribute value a clause tests, once null, empty and multi-valued values are ruled out.
Single = str | bool | int


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


@dataclass(frozen=True)
class _Clause:
    attribute: str
    operator: str
    text: str  # the clause as the reason shows it: displayName REGEX MATCH "^(Sales|Ops)"
    test: Callable[[Single, Any], bool]
    operand: Any  # the clause's value; for REGEX MATCH and NOT REGEX MATCH, its compiled pattern

    def evaluate(self, attributes: Mapping[str, Any]) -> ClauseResult:
        """The clause for these attributes: the value it read, whether it holds, and why not."""
        value = attributes.get(self.attribute)
        return ClauseResult(self.text, self.attribute, value, self._failure(value))

    def _failure(self, value: Any) -> str | None:
        if isinstance(value, list | tuple | dict):
            return f"{self.text} is false ({self.attribute} is multi-valued, not supported by scoping filters)"
        if value is None or value == "":
            if self.operator == "IS NULL":
                return None
            return f"{self.text} is false ({self.attribute} is null)"
        try:
            holds = self.test(value, self.operand)
        except ValueError as exc:  # not an integer, a value of no comparable type, a regex timeout
            return f"{self.text} is false ({exc})"
        return None if holds else f"{self.text} is false"


@dataclass(frozen=True)
class ClauseResult:
    """One clause evaluated for one group."""

    clause: str  # as the reason shows it: displayName REGEX MATCH "^(Sales|Ops)"
    attribute: str
    value: Any  # what the group has, as Graph sent it (None: null or never sent)
    failure: str | None  # why the clause is false; None when it holds

    @property
    def holds(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class ScopeTrace:
    """The scope's steps for one group, in the order they are decided (`e2ad provision` prints them)."""

    security: ScopeDecision  # Cloud Sync's always-on clause
    selected: bool | None  # with scope.mode selected, whether scope.groups lists the group; else None
    filters: tuple[tuple[ClauseResult, ...], ...]  # every clause of every filter, evaluated
    decision: ScopeDecision


class Scope:
    """The scope settings compiled once; `decide` evaluates them for one group."""

    def __init__(self, settings: ScopeSettings) -> None:
        filters, problems = _compile(settings)
        if problems:
            raise ValueError("; ".join(problems))
        self._filters = filters
        self._selected = frozenset(settings.groups) if settings.mode == "selected" else None
        # Attributes ingest reads only because a filter names them: a group may not have been read with them yet.
        self._added = [name for name in filter_attributes(settings) if name not in GROUP_SELECT]

    def unread(self, attributes: Mapping[str, Any]) -> list[str]:
        """The attributes the filters read that Graph has not sent for this group yet (not even as null).

        Right after a configuration adds them to the delta $select, until the full round that
        change triggers has read the group again: its scope cannot be decided from them.
        """
        return [name for name in self._added if name not in attributes]

    def trace(self, group_id: str, attributes: Mapping[str, Any]) -> ScopeTrace:
        """Every step of the scope for one group: the security clause, the selection, each clause of
        each filter with the value it read and whether it held, and the decision (what `decide` returns).
        """
        security = security_clause(attributes)
        selected = None if self._selected is None else group_id.lower() in self._selected
        source = {**attributes, "id": group_id}  # Graph's id is the record's key, not among its attributes
        filters = tuple(tuple(clause.evaluate(source) for clause in clauses) for clauses in self._filters)
        return ScopeTrace(security, selected, filters, _decision(security, selected, filters))

    def decide(self, group_id: str, attributes: Mapping[str, Any]) -> ScopeDecision:
        """In or out of scope, and why: the reason of an out-of-scope decision names what failed.

        The trace's decision, without evaluating filters (regular expressions among them) for a
        group the security clause or the selection already rules out: the processors decide
        every group's scope several times per change.
        """
        security = security_clause(attributes)
        if not security.in_scope:
            return security
        if self._selected is not None and group_id.lower() not in self._selected:
            return _decision(security, False, ())
        return self.trace(group_id, attributes).decision


def _decision(
    security: ScopeDecision, selected: bool | None, filters: tuple[tuple[ClauseResult, ...], ...]
) -> ScopeDecision:
    if not security.in_scope:
        return security
    reason = security.reason
    if selected is not None:
        if not selected:
            return ScopeDecision(False, "not selected (scope.mode selected)")
        reason = "selected (scope.groups)"
    if not filters:
        return ScopeDecision(True, reason)
    failures = []
    for number, clauses in enumerate(filters, 1):
        failure = next((clause.failure for clause in clauses if not clause.holds), None)
        if failure is None:
            return ScopeDecision(True, f"{reason}; scoping filter {number} matched")
        failures.append(f"filter {number}: {failure}")
    return ScopeDecision(False, f"scoping filter: no filter matched ({'; '.join(failures)})")


def scope_errors(settings: Settings) -> list[str]:
    """The scoping filters' problems, each naming its field, for the configuration's load (runtime/config.py)."""
    return _compile(settings.scope)[1]


def filter_attributes(scope: ScopeSettings) -> list[str]:
    """The group attributes the scoping filters read, in order of first use: Graph returns them only when selected."""
    return list(dict.fromkeys(clause.attribute for clauses in scope.filters for clause in clauses))


def _compile(settings: ScopeSettings) -> tuple[list[list[_Clause]], list[str]]:
    filters: list[list[_Clause]] = []
    problems: list[str] = []
    for i, clauses in enumerate(settings.filters):
        compiled = []
        for j, clause in enumerate(clauses):
            where = f"scope.filters[{i}][{j}]"
            if (problem := _attribute_problem(clause.attribute)) is not None:
                problems.append(f"{where}.attribute: {problem}")
            try:
                compiled.append(_compile_clause(clause))
            except dotnet_regex.PatternError as exc:
                problems.append(f"{where}.value: invalid regular expression {clause.value!r}: {exc}")
        filters.append(compiled)
    return filters, problems


def _attribute_problem(name: str) -> str | None:
    if name in MULTI_VALUED_GROUP_PROPERTIES:
        return f"{name} is multi-valued: scoping filters support single-valued attributes only"
    if name in COMPLEX_GROUP_PROPERTIES:
        return f"{name} is an object, not a single value: scoping filters cannot compare it"
    if name in GROUP_PROPERTIES or is_directory_extension(name):
        return None
    if name.lower().startswith("extension_"):
        return (
            f"{name!r} is no directory extension as Graph names it:"
            " extension_<the app's appId, 32 hex digits in lower case without hyphens>_<name>"
        )
    # Graph returns each attribute under its own spelling, so a name in another case matches nothing.
    same = [p for p in GROUP_PROPERTIES if p.lower() == name.lower()]
    guess = same or difflib.get_close_matches(name, GROUP_PROPERTIES, n=1)
    hint = f"; did you mean {guess[0]}?" if guess else ""
    return f"no Graph group has the attribute {name!r} (names are case-sensitive){hint}"


def _compile_clause(clause: ScopeClause) -> _Clause:
    """The clause with its test; raises PatternError for a regular expression .NET's dialect cannot compile."""
    operand: Any = clause.value
    text = f"{clause.attribute} {clause.operator}"
    if isinstance(operand, str):
        text += f' "{operand}"'
    elif operand is not None:
        text += f" {operand}"
    if clause.operator in ("REGEX MATCH", "NOT REGEX MATCH"):
        operand = dotnet_regex.compile_dotnet(operand)
    return _Clause(clause.attribute, clause.operator, text, _TESTS[clause.operator], operand)


def _matches(value: Single, pattern: dotnet_regex.Pattern) -> bool:
    return dotnet_regex.search(pattern, _text(value)) is not None


# Each operator's test of a value that is neither null, empty nor multi-valued, against the clause's operand.
_TESTS: dict[str, Callable[[Single, Any], bool]] = {
    "EQUALS": lambda value, operand: _text(value) == operand,
    "NOT EQUALS": lambda value, operand: _text(value) != operand,
    "IS TRUE": lambda value, _: _boolean(value) is True,
    "IS FALSE": lambda value, _: _boolean(value) is False,
    "IS NULL": lambda value, _: False,
    "IS NOT NULL": lambda value, _: True,
    "REGEX MATCH": _matches,
    "NOT REGEX MATCH": lambda value, pattern: not _matches(value, pattern),
    "GREATER_THAN": lambda value, operand: _integer(value) > operand,
    "GREATER_THAN_OR_EQUALS": lambda value, operand: _integer(value) >= operand,
    "INCLUDES": lambda value, operand: operand in _text(value),
    "&": lambda value, operand: _text(value) in operand,
    "!&": lambda value, operand: _text(value) not in operand,
    "ENDS_WITH": lambda value, operand: _text(value).endswith(operand),
}


def _text(value: Single) -> str:
    """The value as .NET prints it, the form the string operators compare."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | str):
        return str(value)
    raise ValueError(f"a {type(value).__name__} value, which scoping filters do not compare")


def _boolean(value: Single) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and (word := value.strip().lower()) in ("true", "false"):
        return word == "true"
    return None


def _integer(value: Single) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INTEGER.match(value):
        return int(value)
    raise ValueError(f"{value!r} is not an integer")
