"""Scoping: the security clause, scope.mode selected, each operator's truth table, the refused configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2ad.settings import load_settings
from processors.expressions import dotnet_regex
from processors.scoping import Scope, filter_attributes, scope_errors
from runtime.config import ConfigError
from schemas.config import SCOPE_OPERATORS, ScopeSettings, Settings
from schemas.graph import GROUP_PROPERTIES, MULTI_VALUED_GROUP_PROPERTIES, is_directory_extension

GROUP = "0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6"
OTHER = "0f6a3b5c-2222-4000-8000-000000000002"
SECURITY = {"securityEnabled": True, "mailEnabled": False, "onPremisesSyncEnabled": None, "groupTypes": []}
EXTENSION = "extension_b7d8e648520f41d3b9c0fdeb91768a0a_WritebackEnabled"
ABSENT = object()  # the attribute is not among the group's attributes at all


def scope(*filters: list[dict[str, Any]], **settings: Any) -> Scope:
    return Scope(ScopeSettings(filters=list(filters), **settings))


def clause(attribute: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "value": value}


def holds(operator: str, value: Any, attribute_value: Any, attribute: str = "description") -> bool:
    attributes = dict(SECURITY) if attribute_value is ABSENT else {**SECURITY, attribute: attribute_value}
    return scope([clause(attribute, operator, value)]).decide(GROUP, attributes).in_scope


# -- each operator's truth table: (clause value, attribute value, expected) -----------------------
NULLISH = [None, ABSENT, ""]
MULTI = [["Sales"], [], {"extensionAttribute1": "Sales"}]  # lists and objects alike
TRUTH_TABLES: dict[str, list[tuple[Any, Any, bool]]] = {
    "EQUALS": [
        ("Sales", "Sales", True),
        ("Sales", "sales", False),  # case-sensitive
        ("Sales", "Sales ", False),  # ordinal: no trimming
        ("True", True, True),  # a Boolean compares as .NET prints it
        ("true", True, False),
        ("False", False, True),
        ("42", 42, True),
        *(("Sales", v, False) for v in NULLISH + MULTI),
    ],
    "NOT EQUALS": [
        ("Sales", "Marketing", True),
        ("Sales", "sales", True),
        ("Sales", "Sales", False),
        ("True", True, False),
        ("True", False, True),
        *(("Sales", v, False) for v in NULLISH + MULTI),  # false on null, unlike a plain negation
    ],
    "IS TRUE": [
        (None, True, True),
        (None, False, False),
        (None, "true", True),  # a String directory extension holding the flag
        (None, " TRUE ", True),
        (None, "yes", False),
        (None, 1, False),
        *((None, v, False) for v in NULLISH + MULTI),
    ],
    "IS FALSE": [
        (None, False, True),
        (None, True, False),
        (None, "False", True),
        (None, 0, False),
        *((None, v, False) for v in NULLISH + MULTI),
    ],
    "IS NULL": [
        (None, None, True),
        (None, ABSENT, True),
        (None, "", True),
        (None, " ", False),
        (None, "x", False),
        (None, False, False),
        (None, 0, False),
        *((None, v, False) for v in MULTI),  # multi-valued: false, whatever the operator
    ],
    "IS NOT NULL": [
        (None, "x", True),
        (None, False, True),
        (None, 0, True),
        *((None, v, False) for v in NULLISH + MULTI),
    ],
    "REGEX MATCH": [
        ("([1-9][0-9])", "Group 42", True),  # a match anywhere, as Regex.IsMatch
        ("^([1-9][0-9])$", "Group 42", False),
        ("^sales", "Sales", False),  # case-sensitive
        ("(?<dept>Sales)-\\k<dept>", "Sales-Sales", True),  # .NET named groups and back-references
        ("^True$", True, True),
        ("^1[0-9]$", 12, True),
        *((".*", v, False) for v in NULLISH + MULTI),
    ],
    "NOT REGEX MATCH": [
        ("^Sales", "Marketing", True),
        ("^Sales", "Sales EMEA", False),
        ("^False$", True, True),
        *((".*", v, False) for v in NULLISH + MULTI),  # the documented "false if attribute null/empty"
    ],
    "GREATER_THAN": [
        (10, 11, True),
        (10, 10, False),
        (10, 9, False),
        (10, "11", True),  # an integer held as a string
        (10, " 11 ", True),
        (-5, -4, True),
        (10, "eleven", False),
        (10, "1_1", False),
        (10, "11.0", False),
        (10, True, False),  # a Boolean is no integer
        (10, 11.5, False),
        *((10, v, False) for v in NULLISH + MULTI),
    ],
    "GREATER_THAN_OR_EQUALS": [
        (10, 10, True),
        (10, 11, True),
        (10, 9, False),
        (10, "10", True),
        (10, "ten", False),
        *((10, v, False) for v in NULLISH + MULTI),
    ],
    "INCLUDES": [
        ("Sales", "Contoso-Sales-US", True),
        ("sales", "Contoso-Sales-US", False),
        ("True", True, True),
        ("Contoso-Sales-US", "Sales", False),
        *(("Sales", v, False) for v in NULLISH + MULTI),
    ],
    "&": [
        ("Sales,Marketing,Operations", "Marketing", True),  # the attribute occurs in the value
        ("Sales,Marketing,Operations", "Sales,Mark", True),  # a substring test, not a list lookup
        ("Sales,Marketing,Operations", "marketing", False),
        ("Sales,Marketing,Operations", "Contoso-Sales", False),
        ("True;False", True, True),
        *(("Sales", v, False) for v in NULLISH + MULTI),
    ],
    "!&": [
        ("Sales,Marketing", "Operations", True),
        ("Sales,Marketing", "Sales", False),
        ("Sales,Marketing", "sales", True),
        *(("Sales", v, False) for v in NULLISH + MULTI),  # false on null, like NOT EQUALS
    ],
    "ENDS_WITH": [
        ("-US", "Contoso-Sales-US", True),
        ("-us", "Contoso-Sales-US", False),
        ("-US", "Contoso-US-EU", False),
        ("e", True, True),
        *(("-US", v, False) for v in NULLISH + MULTI),
    ],
}


def test_every_operator_has_a_truth_table() -> None:
    assert set(TRUTH_TABLES) == set(SCOPE_OPERATORS)


@pytest.mark.parametrize(
    ("operator", "value", "attribute_value", "expected"),
    [(op, *row) for op, rows in TRUTH_TABLES.items() for row in rows],
)
def test_operator_truth_table(operator: str, value: Any, attribute_value: Any, expected: bool) -> None:
    assert holds(operator, value, attribute_value) is expected


@pytest.mark.parametrize(
    "description", ["Contoso-Sales-US", "Contoso-Marketing-US", "Contoso-Operations-US", "Contoso-LT-US"]
)
def test_the_documented_regex_example(description: str) -> None:
    # entra-provisioning.md §1.2: selects the first three, not Contoso-LT-US.
    pattern = r"(?:^|\W)Sales|Marketing|Operations(?:$|\W)"
    assert holds("REGEX MATCH", pattern, description) is (description != "Contoso-LT-US")


@given(st.text(max_size=40), st.text(min_size=1, max_size=10))
def test_the_string_operators_are_ordinal(attribute_value: str, value: str) -> None:
    present = attribute_value != ""
    assert holds("EQUALS", value, attribute_value) is (present and attribute_value == value)
    assert holds("NOT EQUALS", value, attribute_value) is (present and attribute_value != value)
    assert holds("INCLUDES", value, attribute_value) is (present and value in attribute_value)
    assert holds("&", value, attribute_value) is (present and attribute_value in value)
    assert holds("!&", value, attribute_value) is (present and attribute_value not in value)
    assert holds("ENDS_WITH", value, attribute_value) is (present and attribute_value.endswith(value))


def test_a_regex_that_times_out_is_false_both_ways_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dotnet_regex, "MATCH_TIMEOUT", 0.01)
    value = "a" * 5000 + "!"
    for operator in ("REGEX MATCH", "NOT REGEX MATCH"):
        decision = scope([clause("description", operator, "^(a|aa)+$")]).decide(
            GROUP, {**SECURITY, "description": value}
        )
        assert not decision.in_scope
        assert "gave up after" in decision.reason


# -- composition and order -----------------------------------------------------------------------
SALES = clause("displayName", "REGEX MATCH", "^(Sales|Ops)")
FLAGGED = clause(EXTENSION, "IS TRUE")


def test_clauses_are_and_ed_filters_or_ed() -> None:
    s = scope([SALES, FLAGGED], [clause("description", "EQUALS", "always")])
    decide = lambda **a: s.decide(GROUP, {**SECURITY, **a})  # noqa: E731
    assert decide(displayName="Sales EMEA", **{EXTENSION: True}).in_scope
    assert not decide(displayName="Sales EMEA", **{EXTENSION: False}).in_scope
    assert not decide(displayName="HR", **{EXTENSION: True}).in_scope
    assert decide(displayName="HR", description="always").in_scope
    assert decide(displayName="HR", description="always").reason == "all security groups; scoping filter 2 matched"


def test_out_of_scope_reason_names_the_first_failing_clause_of_each_filter() -> None:
    s = scope([SALES, FLAGGED], [clause("description", "EQUALS", "always")])
    decision = s.decide(GROUP, {**SECURITY, "displayName": "Sales EMEA", "description": "never"})
    assert decision == decision.__class__(
        False,
        "scoping filter: no filter matched ("
        f"filter 1: {EXTENSION} IS TRUE is false ({EXTENSION} is null); "
        'filter 2: description EQUALS "always" is false)',
    )
    only = scope([SALES]).decide(GROUP, {**SECURITY, "displayName": "HR"})
    assert (
        only.reason == 'scoping filter: no filter matched (filter 1: displayName REGEX MATCH "^(Sales|Ops)" is false)'
    )


def test_the_trace_shows_every_clause_with_its_value_and_the_decision_decide_returns() -> None:
    s = scope([SALES, FLAGGED], [clause("description", "EQUALS", "always")], mode="selected", groups=[GROUP])
    attributes = {**SECURITY, "displayName": "Sales EMEA", "description": "always"}
    trace = s.trace(GROUP, attributes)
    assert trace.security.in_scope and trace.selected is True
    assert [[(c.clause, c.value, c.holds) for c in clauses] for clauses in trace.filters] == [
        [('displayName REGEX MATCH "^(Sales|Ops)"', "Sales EMEA", True), (f"{EXTENSION} IS TRUE", None, False)],
        [('description EQUALS "always"', "always", True)],
    ]
    assert trace.filters[0][1].failure == f"{EXTENSION} IS TRUE is false ({EXTENSION} is null)"
    assert trace.decision == s.decide(GROUP, attributes)
    assert trace.decision.reason == "selected (scope.groups); scoping filter 2 matched"


def test_the_trace_evaluates_the_filters_also_when_the_security_clause_fails() -> None:
    trace = scope([SALES]).trace(OTHER, {**SECURITY, "mailEnabled": True, "displayName": "Sales"})
    assert not trace.decision.in_scope and trace.decision == trace.security
    assert trace.selected is None and trace.filters[0][0].holds


def test_no_filter_is_every_security_group() -> None:
    decision = scope().decide(GROUP, SECURITY)
    assert decision.in_scope and decision.reason == "all security groups"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"securityEnabled": False}, "not a security group"),
        ({"mailEnabled": True}, "mail-enabled groups are not provisioned"),
        ({"onPremisesSyncEnabled": True}, "synced from on-premises AD"),
        ({"groupTypes": ["Unified"]}, "Microsoft 365 groups are not provisioned"),
    ],
)
def test_the_security_clause_comes_first(change: dict[str, Any], reason: str) -> None:
    # A filter that holds for every group, and a selection that holds it: the security clause still decides.
    s = scope([clause("displayName", "IS NOT NULL")], mode="selected", groups=[GROUP])
    decision = s.decide(GROUP, {**SECURITY, "displayName": "Sales", **change})
    assert (decision.in_scope, decision.reason) == (False, reason)


def test_selected_mode_takes_the_listed_groups_case_insensitively_then_the_filters() -> None:
    s = scope([SALES], mode="selected", groups=[GROUP.upper()])
    assert s.decide(GROUP, {**SECURITY, "displayName": "Sales"}).in_scope
    assert s.decide(GROUP.upper(), {**SECURITY, "displayName": "Sales"}).in_scope
    assert (
        s.decide(GROUP, {**SECURITY, "displayName": "Sales"}).reason
        == "selected (scope.groups); scoping filter 1 matched"
    )
    other = s.decide(OTHER, {**SECURITY, "displayName": "Sales"})
    assert (other.in_scope, other.reason) == (False, "not selected (scope.mode selected)")
    assert not s.decide(GROUP, {**SECURITY, "displayName": "HR"}).in_scope


def test_a_filter_may_test_the_object_id() -> None:
    assert scope([clause("id", "EQUALS", GROUP)]).decide(GROUP, SECURITY).in_scope
    assert not scope([clause("id", "EQUALS", GROUP)]).decide(OTHER, SECURITY).in_scope


def test_filter_attributes_lists_each_attribute_once_in_order() -> None:
    settings = ScopeSettings(
        filters=[[SALES, FLAGGED], [clause("description", "IS NULL"), clause("displayName", "ENDS_WITH", "x")]]
    )
    assert filter_attributes(settings) == ["displayName", EXTENSION, "description"]
    assert filter_attributes(ScopeSettings()) == []


def test_graph_group_properties() -> None:
    assert {"displayName", "description", "securityEnabled", "classification", "mailNickname"} <= GROUP_PROPERTIES
    assert MULTI_VALUED_GROUP_PROPERTIES <= GROUP_PROPERTIES and "groupTypes" in MULTI_VALUED_GROUP_PROPERTIES
    assert not {"members", "owners"} & GROUP_PROPERTIES  # navigation properties, not attributes
    assert is_directory_extension(EXTENSION)
    assert not is_directory_extension(EXTENSION.replace("b7d8", "B7D8"))  # Graph spells the appId in lower case
    assert not is_directory_extension("extension_b7d8e648-520f-41d3-b9c0-fdeb91768a0a_WritebackEnabled")
    assert not is_directory_extension("extension_b7d8e648520f41d3b9c0fdeb91768a0a_")


# -- refused configurations, through the loader ------------------------------------------------------
def load(tmp_path: Path, scope_yaml: str) -> Settings:
    path = tmp_path / "e2ad.yaml"
    path.write_text("scope:\n" + scope_yaml)
    return load_settings(path, environ={})


def refusal(tmp_path: Path, scope_yaml: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, scope_yaml)
    return str(caught.value)


@pytest.mark.parametrize(
    ("scope_yaml", "expected"),
    [
        ("  mode: selected\n", ["scope.groups is empty with scope.mode selected"]),
        (f"  mode: selected\n  groups: [{GROUP}, Sales]\n", ["scope.groups[1]: ", "'Sales' is not an Entra object id"]),
        ("  filters:\n    - []\n", ["scope.filters[0]: ", "a filter needs at least one clause"]),
        (
            "  filters:\n    - - {attribute: displayName, operator: LIKE, value: x}\n",
            ["scope.filters[0][0].operator: ", "'EQUALS'"],
        ),
        (
            "  filters:\n    - - {attribute: displayName, operator: IS TRUE}\n"
            "      - {attribute: displayName, operator: REGEX MATCH, value: '(Sales'}\n",
            ["scope.filters[0][1].value: invalid regular expression '(Sales'"],
        ),
        (
            f"  filters:\n    - - {{attribute: {EXTENSION}, operator: IS TRUE, value: 'yes'}}\n",
            ["scope.filters[0][0]: ", "operator IS TRUE takes no value"],
        ),
        (
            "  filters:\n    - - {attribute: displayName, operator: IS NULL}\n"
            "    - - {attribute: unseenCount, operator: GREATER_THAN, value: ten}\n",
            ["scope.filters[1][0]: ", "GREATER_THAN compares integers: 'ten' is not one"],
        ),
        (
            "  filters:\n    - - {attribute: unseenCount, operator: GREATER_THAN_OR_EQUALS, value: '1_000'}\n",
            ["scope.filters[0][0]: ", "is not one"],
        ),
        (
            "  filters:\n    - - {attribute: unseenCount, operator: GREATER_THAN, value: true}\n",
            ["scope.filters[0][0]: ", "is not one"],
        ),
        (
            "  filters:\n    - - {attribute: displayName, operator: EQUALS}\n",
            ["scope.filters[0][0]: ", "operator EQUALS needs a value"],
        ),
        (
            "  filters:\n    - - {attribute: displayName, operator: INCLUDES, value: ''}\n",
            ["scope.filters[0][0]: ", "needs a non-empty value"],
        ),
        (
            "  filters:\n    - - {attribute: displayNam, operator: EQUALS, value: Sales}\n",
            [
                "scope.filters[0][0].attribute: no Graph group has the attribute 'displayNam'",
                "did you mean displayName?",
            ],
        ),
        (
            "  filters:\n    - - {attribute: DisplayName, operator: EQUALS, value: Sales}\n",
            ["scope.filters[0][0].attribute: ", "case-sensitive", "did you mean displayName?"],
        ),
        (
            "  filters:\n    - - {attribute: extension_B7D8_Flag, operator: IS TRUE}\n",
            ["scope.filters[0][0].attribute: ", "no directory extension as Graph names it"],
        ),
        (
            "  filters:\n    - - {attribute: groupTypes, operator: INCLUDES, value: DynamicMembership}\n",
            ["scope.filters[0][0].attribute: groupTypes is multi-valued"],
        ),
        (
            "  filters:\n    - - {attribute: proxyAddresses, operator: IS NOT NULL}\n",
            ["scope.filters[0][0].attribute: proxyAddresses is multi-valued"],
        ),
        (
            "  filters:\n    - - {attribute: onPremisesExtensionAttributes, operator: IS NOT NULL}\n",
            ["scope.filters[0][0].attribute: onPremisesExtensionAttributes is an object"],
        ),
    ],
)
def test_refused_configuration_names_the_field(tmp_path: Path, scope_yaml: str, expected: list[str]) -> None:
    message = refusal(tmp_path, scope_yaml)
    for part in expected:
        assert part in message


def test_every_bad_clause_is_named_at_once(tmp_path: Path) -> None:
    message = refusal(
        tmp_path,
        "  filters:\n    - - {attribute: displayNam, operator: EQUALS, value: x}\n"
        "      - {attribute: description, operator: NOT REGEX MATCH, value: '[a-'}\n"
        "    - - {attribute: groupTypes, operator: IS NULL}\n",
    )
    assert "scope.filters[0][0].attribute:" in message
    assert "scope.filters[0][1].value: invalid regular expression" in message
    assert "scope.filters[1][0].attribute:" in message


def test_a_good_scope_loads_and_compiles(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        f"  mode: selected\n  groups: [{GROUP.upper()}]\n  filters:\n"
        "    - - {attribute: displayName, operator: regex_match, value: '^(Sales|Ops)'}\n"
        f"      - {{attribute: {EXTENSION}, operator: IS TRUE}}\n"
        "    - - {attribute: securityEnabled, operator: EQUALS, value: true}\n"
        "      - {attribute: unseenCount, operator: GREATER_THAN, value: '5'}\n",
    )
    assert scope_errors(settings) == []
    [[name, flag], [enabled, count]] = settings.scope.filters
    assert (name.operator, flag.value, enabled.value, count.value) == ("REGEX MATCH", None, "True", 5)
    assert settings.scope.groups == [GROUP]
    s = Scope(settings.scope)
    assert s.decide(GROUP, {**SECURITY, "unseenCount": 6}).in_scope  # securityEnabled EQUALS "True"
    assert not s.decide(GROUP, {**SECURITY, "unseenCount": 5}).in_scope


def test_scope_refuses_what_the_load_refuses() -> None:
    with pytest.raises(ValueError, match=r"scope.filters\[0\]\[0\].value: invalid regular expression"):
        scope([clause("displayName", "REGEX MATCH", "(")])
