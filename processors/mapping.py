"""Attribute mappings from an Entra group to its AD group, as Cloud Sync has them (reference §2, §2.2).

Cloud Sync's defaults apply to every target the configuration does not map. Two mappings are
fixed, as in Cloud Sync: the anchor msDS-ExternalDirectoryObjectId and adminDescription, since
the writer finds groups by the anchor; other attributes the writer or AD owns cannot be mapped.
sAMAccountName is e2ad's stable `Group_<last 12 of objectId>` unless mapped, and flows only when
the group is created by default: renaming the pre-Windows 2000 name would break what uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from processors.expressions import (
    DEFAULT_GROUP_MAPPINGS,
    IGNORE_FLOW,
    Expression,
    ExpressionError,
    check_mappings,
    compile_expression,
    referenced_attributes,
)
from runtime.text import utf16_length
from schemas.config import MappingRule, Settings, mapping_label, parse_mappings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, AttributeValue
from schemas.graph import GROUP_PROPERTIES, is_directory_extension

CONTAINER = "parentDistinguishedName"
SAM_ACCOUNT_NAME = "sAMAccountName"
REQUIRED = ("cn", CONTAINER)
# AD would otherwise invent `$XXXXXX-…` names (reference §2); the suffix is the cn's.
DEFAULT_SAM_ACCOUNT_NAME = 'Append("Group_",Mid([objectId],25,12))'
# The attributes a mapping may not write, case-folded, and why.
_FIXED = "fixed, as in Cloud Sync (the writer matches on it)"
REFUSED_TARGETS: Mapping[str, str] = {
    "msds-externaldirectoryobjectid": _FIXED,
    "admindescription": _FIXED,
    "objectguid": "set by AD, the writer's reference to the group",
    "objectsid": "set by AD",
    "samaccounttype": "set by AD from groupType",
    "objectcategory": "set by AD from objectClass",
    "objectclass": "the writer creates objects of class group",
    "grouptype": "the writer creates universal security groups, as Cloud Sync does",
    "member": "the writer adds and removes members from the Entra group's members (the membership section)",
    "memberof": "AD's back link of member",
    "distinguishedname": "follows from cn and parentDistinguishedName",
    "name": "AD's copy of the cn: map cn",
    "iscriticalsystemobject": "AD's own; the writer never touches groups that carry it",
}
# The group's name and place: the writer renames and moves the group whenever they change, so
# they always flow, and have a value for every group.
_ALWAYS_FLOWING = frozenset(name.casefold() for name in REQUIRED)
# AD's limits on a group's pre-Windows 2000 name: the schema's rangeUpper, and the characters
# it refuses (Samba answers 19 constraintViolation for them).
MAX_SAM_ACCOUNT_NAME = 256
SAM_ACCOUNT_NAME_REFUSED = frozenset('"/\\[]:;|=,+*?<>')
_REFUSED_SHOWN = '"/\\[]:;|=,+*?<>'
_KNOWN_TARGETS = {name.casefold(): name for name in (*DEFAULT_GROUP_MAPPINGS, SAM_ACCOUNT_NAME, CONTAINER)}
# Cloud Sync's mappings call the group's id objectId; Graph's $select calls it id.
_SELECT_NAMES = {"objectId": "id"}
_GRAPH_NAMES = {name.casefold(): name for name in (*GROUP_PROPERTIES, *_SELECT_NAMES)}


class MappingError(Exception):
    """A mapping failed for one group; the message names the target attribute."""


@dataclass(frozen=True)
class MappedGroup:
    container: str
    attributes: dict[str, AttributeValue]
    create_only: dict[str, AttributeValue]


@dataclass(frozen=True)
class MappingProblem:
    """What is wrong with one configured mapping; `text` names it (`mappings[2] (objectGUID): …`)."""

    text: str
    expression: str | None = None  # the expression at fault, for showing `position` in it
    position: int | None = None

    def __str__(self) -> str:
        return self.text


def builtin_rules(target_container: str | None) -> list[MappingRule]:
    """Cloud Sync's defaults, e2ad's sAMAccountName, and provisioning.target_container as the container."""
    rules = [
        MappingRule(target=target, type="expression", expression=text)
        for target, text in DEFAULT_GROUP_MAPPINGS.items()
    ]
    rules.append(MappingRule(target=SAM_ACCOUNT_NAME, type="expression", expression=DEFAULT_SAM_ACCOUNT_NAME))
    if target_container is not None:
        rules.append(MappingRule(target=CONTAINER, type="constant", value=target_container))
    return rules


def effective_rules(rules: Sequence[MappingRule], target_container: str | None) -> list[MappingRule]:
    """The rules applied: the built-in set, each target replaced by the configuration's rule for it."""
    by_target = {rule.target.casefold(): rule for rule in builtin_rules(target_container)}
    for rule in rules:
        # Spelled as e2ad spells it, so that the mapper and the writer find it.
        key = rule.target.casefold()
        by_target[key] = rule.model_copy(update={"target": _KNOWN_TARGETS.get(key, rule.target)})
    return list(by_target.values())


def mapping_sources(rules: Sequence[MappingRule]) -> list[str]:
    """Every Graph group property the mappings read, the defaults they keep included, as $select names them."""
    names: set[str] = set()
    for rule in effective_rules(rules, None):  # the container constant reads nothing
        for name in _sources(rule):
            graph = _GRAPH_NAMES.get(name.casefold(), name)
            names.add(_SELECT_NAMES.get(graph, graph))
    return sorted(names)


def mapping_errors(mappings: object, tokens: Mapping[str, str]) -> list[MappingProblem]:
    """Every problem of a configuration's `mappings:` (list or dict form), each naming its mapping.

    Shape (schemas.config.parse_mappings), refused targets, unknown source attributes and
    expression errors: what the configuration's load refuses and `e2ad expr check` prints.
    """
    rules, shape = parse_mappings(mappings)
    problems = [MappingProblem(text) for text in shape]
    for index, rule in rules.items():
        problems += _rule_problems(mapping_label(index, rule.target), rule, tokens)
    return problems


def settings_errors(settings: Settings) -> list[str]:
    """The configured mappings' problems, for the configuration's load (runtime/config.py checks)."""
    return [str(problem) for problem in mapping_errors(settings.mappings, settings.tokens)]


def _rule_problems(label: str, rule: MappingRule, tokens: Mapping[str, str]) -> list[MappingProblem]:
    target = rule.target.casefold()
    if target in REFUSED_TARGETS:
        return [MappingProblem(f"{label}: cannot be mapped: {REFUSED_TARGETS[target]}")]
    problems: list[MappingProblem] = []
    if target in _ALWAYS_FLOWING:
        if rule.apply != "always":
            problems.append(
                MappingProblem(f"{label}: apply must be always: the writer renames and moves groups as it changes")
            )
        if rule.default is not None:
            problems.append(
                MappingProblem(
                    f"{label}: default does not apply: a group needs it on every update too; "
                    "put the fallback in the expression (Coalesce, Switch's default, IIF)"
                )
            )
    if rule.type == "expression":
        assert rule.expression is not None
        errors = check_mappings({rule.target: rule.expression}, tokens=tokens)
        problems += [_expression_problem(label, rule.expression, error) for error in errors]
        if errors:
            return problems  # a syntax error hides the attributes; a check error would be reported twice
    problems += [MappingProblem(f"{label}: {_unknown_source(name)}") for name in _sources(rule) if not _is_source(name)]
    if target == SAM_ACCOUNT_NAME.casefold():
        for value in (rule.value, rule.default):
            if value is not None and (problem := sam_account_name_problem(value)) is not None:
                problems.append(MappingProblem(f"{label}: {problem}"))
    return problems


def _expression_problem(label: str, text: str, error: ExpressionError) -> MappingProblem:
    where = f" at position {error.position}" if error.position is not None else ""
    return MappingProblem(f"{label}: {error.message}{where}", expression=text, position=error.position)


def _sources(rule: MappingRule) -> list[str]:
    if rule.type == "direct":
        return [rule.source] if rule.source else []
    if rule.type == "expression" and rule.expression is not None:
        return referenced_attributes(rule.expression)
    return []


def _is_source(name: str) -> bool:
    # Entra attribute names are case-insensitive, as the expression language reads them.
    return name.casefold() in _GRAPH_NAMES or is_directory_extension(name)


def _unknown_source(name: str) -> str:
    close = get_close_matches(name, sorted({*GROUP_PROPERTIES, *_SELECT_NAMES}), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"source attribute {name!r} is not a property of a Graph group nor a directory extension "
        f"(extension_<appId>_<name>){hint}"
    )


def sam_account_name_problem(value: str) -> str | None:
    """Why AD would refuse `value` as a group's sAMAccountName, or None."""
    if (length := utf16_length(value)) > MAX_SAM_ACCOUNT_NAME:
        return f"sAMAccountName {value[:40]!r}… is {length} characters long, AD allows {MAX_SAM_ACCOUNT_NAME}"
    refused = sorted({char for char in value if char in SAM_ACCOUNT_NAME_REFUSED})
    if refused:
        return f"sAMAccountName {value!r} contains {', '.join(map(repr, refused))}: AD refuses any of {_REFUSED_SHOWN}"
    return None


@dataclass(frozen=True)
class _CompiledRule:
    target: str
    expression: Expression
    on_create: bool
    default: str | None


class GroupMapper:
    """The effective mapping set compiled once; `map` evaluates it for one group."""

    def __init__(
        self,
        mappings: Sequence[MappingRule] | Mapping[str, str],
        tokens: Mapping[str, str],
        target_container: str | None,
    ) -> None:
        """`mappings` in either form; refused with ValueError naming every problem."""
        problems = [str(problem) for problem in mapping_errors(mappings, tokens)]
        rules = effective_rules(list(parse_mappings(mappings)[0].values()), target_container)
        problems += [
            f"mappings: {name}: required (set provisioning.target_container or map {CONTAINER})"
            for name in REQUIRED
            if name not in {rule.target for rule in rules}
        ]
        if problems:
            raise ValueError("; ".join(problems))
        self._rules = [
            _CompiledRule(
                rule.target, compile_expression(_text(rule), tokens=tokens), rule.apply == "on_create", rule.default
            )
            for rule in rules
        ]

    def map(self, group_id: str, group: Mapping[str, Any]) -> MappedGroup:
        source = {**group, "objectId": group_id}
        values: dict[str, AttributeValue] = {}
        create_only: dict[str, AttributeValue] = {}
        for rule in self._rules:
            try:
                value = rule.expression.evaluate(source)
            except ExpressionError as exc:
                raise MappingError(f"{rule.target}: {exc}") from None
            if value is IGNORE_FLOW:
                continue  # IgnoreFlowIfNullOrEmpty: the attribute is left as it is in AD
            single = _single(rule.target, value)
            if rule.on_create:
                create_only[rule.target] = rule.default if single is None else single
                continue
            # A null flows as today: it clears the attribute on update; the default fills it on create only.
            values[rule.target] = single
            if single is None and rule.default is not None:
                create_only[rule.target] = rule.default
        for name in REQUIRED:
            if not values.get(name):
                raise MappingError(f"{name}: the mapping gave no value")
        for flowed in (values, create_only):
            sam = flowed.get(SAM_ACCOUNT_NAME)
            if isinstance(sam, str) and (problem := sam_account_name_problem(sam)) is not None:
                raise MappingError(f"{SAM_ACCOUNT_NAME}: {problem}")
        container = str(values.pop(CONTAINER))
        values["groupType"] = UNIVERSAL_SECURITY_GROUP  # isSecurityGroup and UniversalScope are constants
        return MappedGroup(container=container, attributes=values, create_only=create_only)


def _text(rule: MappingRule) -> str:
    """The rule as an expression: a direct mapping reads its source, a constant is a string literal."""
    if rule.type == "direct":
        return f"[{rule.source}]"
    if rule.type == "constant":
        return '"' + (rule.value or "").replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert rule.expression is not None
    return rule.expression


def _single(name: str, value: object) -> AttributeValue:
    if isinstance(value, list):
        raise MappingError(f"{name}: gave {len(value)} values; a group attribute here takes one")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # LDAP's Boolean syntax
    if value is None or isinstance(value, int | str):
        return value  # type: ignore[return-value]
    return str(value)
