"""Attribute mappings from an Entra group to its AD group, in the Entra expression language.

Cloud Sync's defaults (reference §2) apply unless the configuration maps an attribute
differently. Two mappings are fixed, as in Cloud Sync: the anchor msDS-ExternalDirectoryObjectId
and adminDescription, since the writer finds groups by the anchor. sAMAccountName flows only
when the group is created: renaming the pre-Windows 2000 name would break what uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.expressions import (
    DEFAULT_GROUP_MAPPINGS,
    IGNORE_FLOW,
    Expression,
    ExpressionError,
    check_mappings,
    compile_expression,
)
from schemas.config import Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, AttributeValue

FIXED = frozenset({"msDS-ExternalDirectoryObjectId", "adminDescription"})
CREATE_ONLY = frozenset({"sAMAccountName"})
CONTAINER = "parentDistinguishedName"
REQUIRED = ("cn", CONTAINER)
# AD would otherwise invent `$XXXXXX-…` names (reference §2); the suffix is the cn's.
DEFAULT_SAM_ACCOUNT_NAME = 'Append("Group_",Mid([objectId],25,12))'


class MappingError(Exception):
    """A mapping failed for one group; the message names the target attribute."""


@dataclass(frozen=True)
class MappedGroup:
    container: str
    attributes: dict[str, AttributeValue]
    create_only: dict[str, AttributeValue]


def mapping_set(overrides: Mapping[str, str], target_container: str | None) -> dict[str, str]:
    """The effective mapping set: Cloud Sync's defaults, the container, then the configuration."""
    mappings = {**DEFAULT_GROUP_MAPPINGS, "sAMAccountName": DEFAULT_SAM_ACCOUNT_NAME}
    if target_container is not None:
        mappings[CONTAINER] = _constant(target_container)
    mappings.update(overrides)
    return mappings


def configuration_errors(overrides: Mapping[str, str], tokens: Mapping[str, str]) -> list[str]:
    """Every problem of configured mappings, each naming its target attribute (checked at load)."""
    problems = [
        f"mappings.{name}: fixed, as in Cloud Sync (the writer matches on it)"
        for name in sorted(FIXED & set(overrides))
    ]
    return problems + [f"mappings.{error}" for error in check_mappings(mapping_set(overrides, None), tokens=tokens)]


def settings_errors(settings: Settings) -> list[str]:
    """The configured mappings' problems, for the configuration's load (runtime/config.py checks)."""
    return configuration_errors(settings.mappings, settings.tokens)


class GroupMapper:
    """The mapping set compiled once; `map` evaluates it for one group."""

    def __init__(self, overrides: Mapping[str, str], tokens: Mapping[str, str], target_container: str | None) -> None:
        mappings = mapping_set(overrides, target_container)
        problems = configuration_errors(overrides, tokens)
        problems += [
            f"mappings.{name}: required (set provisioning.target_container or map {CONTAINER})"
            for name in REQUIRED
            if name not in mappings
        ]
        if problems:
            raise ValueError("; ".join(problems))
        self._compiled: dict[str, Expression] = {
            name: compile_expression(text, tokens=tokens) for name, text in mappings.items()
        }

    def map(self, group_id: str, group: Mapping[str, Any]) -> MappedGroup:
        source = {**group, "objectId": group_id}
        values: dict[str, AttributeValue] = {}
        for name, expression in self._compiled.items():
            try:
                value = expression.evaluate(source)
            except ExpressionError as exc:
                raise MappingError(f"{name}: {exc}") from None
            if value is IGNORE_FLOW:
                continue  # IgnoreFlowIfNullOrEmpty: the attribute is left as it is in AD
            values[name] = _single(name, value)
        for name in REQUIRED:
            if not values.get(name):
                raise MappingError(f"{name}: the mapping gave no value")
        container = str(values.pop(CONTAINER))
        create_only = {name: values.pop(name) for name in CREATE_ONLY if name in values}
        values["groupType"] = UNIVERSAL_SECURITY_GROUP  # isSecurityGroup and UniversalScope are constants
        return MappedGroup(container=container, attributes=values, create_only=create_only)


def _single(name: str, value: object) -> AttributeValue:
    if isinstance(value, list):
        raise MappingError(f"{name}: gave {len(value)} values; a group attribute here takes one")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # LDAP's Boolean syntax
    if value is None or isinstance(value, int | str):
        return value  # type: ignore[return-value]
    return str(value)


def _constant(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
