"""Attribute mappings as Cloud Sync has them: rules over the defaults, their flow, and their checks at load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from e2ad.cli_expr import expr
from e2ad.settings import load_settings
from processors.mapping import REFUSED_TARGETS, GroupMapper, MappingError, mapping_sources
from runtime.config import ConfigError
from schemas.config import MappingRule, ProvisioningJob
from schemas.graph import GROUP_PROPERTIES, is_directory_extension

GROUP = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
CONTAINER = "OU=Groups,DC=e2ad,DC=test"
SEED_SWITCH = (
    'Switch([displayName], "OU=Default,OU=container,DC=contoso,DC=com", '
    '"Marketing", "OU=Marketing,OU=container,DC=contoso,DC=com")'
)
EXTENSION = "extension_0123456789abcdef0123456789abcdef_costCenter"


def mapper(mappings: object, target_container: str | None = CONTAINER) -> GroupMapper:
    return GroupMapper(mappings, {}, target_container)  # type: ignore[arg-type]


def config_file(tmp_path: Path, mappings: object, **sections: object) -> Path:
    path = tmp_path / "e2ad.yaml"
    path.write_text(yaml.safe_dump({"mappings": mappings, **sections}, sort_keys=False), encoding="utf-8")
    return path


def load_problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return str(caught.value)


# -- the rules and the defaults -----------------------------------------------------------------
def test_the_dict_form_is_one_expression_rule_per_target_with_samaccountname_on_create() -> None:
    job = ProvisioningJob.model_validate({"mappings": {"description": "[mail]", "sAMAccountName": "[mailNickname]"}})
    assert job.mappings == [
        MappingRule(target="description", type="expression", expression="[mail]", apply="always"),
        MappingRule(target="sAMAccountName", type="expression", expression="[mailNickname]", apply="on_create"),
    ]


def test_the_list_form_from_the_environment_as_json() -> None:
    rules = [{"target": "info", "type": "constant", "value": "by e2ad", "apply": "on_create"}]
    settings = load_settings(environ={"E2AD_MAPPINGS": json.dumps(rules)})
    assert settings.mappings == [MappingRule(target="info", type="constant", value="by e2ad", apply="on_create")]


def test_the_file_overrides_the_defaults_per_target_and_keeps_the_others() -> None:
    mapped = mapper(
        [
            {"target": "Description", "type": "expression", "expression": 'Join(" ", [description], "(cloud)")'},
            {"target": "displayName", "type": "direct", "source": "mailNickname"},
        ]
    ).map(GROUP, {"displayName": "Sales", "description": "Team", "mailNickname": "sales"})
    assert mapped.attributes["description"] == "Team (cloud)"  # LDAP names are case-insensitive: it replaces
    assert "Description" not in mapped.attributes
    assert mapped.attributes["displayName"] == "sales"
    assert mapped.attributes["cn"] == "Sales_44ee44ee44ee"  # the default, not overridden
    assert mapped.create_only == {"sAMAccountName": "Group_44ee44ee44ee"}
    assert mapped.container == CONTAINER


def test_the_seeds_switch_routes_the_container_as_written() -> None:
    routed = mapper([{"target": "parentdistinguishedname", "type": "expression", "expression": SEED_SWITCH}], None)
    assert routed.map(GROUP, {"displayName": "Marketing"}).container == "OU=Marketing,OU=container,DC=contoso,DC=com"
    assert routed.map(GROUP, {"displayName": "Finance"}).container == "OU=Default,OU=container,DC=contoso,DC=com"


def test_the_container_can_be_constant_or_direct_and_overrides_target_container() -> None:
    constant = mapper([{"target": "parentDistinguishedName", "type": "constant", "value": "OU=A\\, B,DC=x"}])
    assert constant.map(GROUP, {"displayName": "S"}).container == "OU=A\\, B,DC=x"
    direct = mapper([{"target": "parentDistinguishedName", "type": "direct", "source": EXTENSION}], None)
    assert direct.map(GROUP, {"displayName": "S", EXTENSION: "OU=Cost,DC=x"}).container == "OU=Cost,DC=x"


def test_on_create_values_go_to_create_only_and_never_to_the_updated_attributes() -> None:
    mapped = mapper(
        [
            {"target": "info", "type": "constant", "value": "provisioned by e2ad", "apply": "on_create"},
            {"target": "sAMAccountName", "type": "direct", "source": "mailNickname", "apply": "always"},
        ]
    ).map(GROUP, {"displayName": "Sales", "mailNickname": "sales"})
    assert mapped.create_only == {"info": "provisioned by e2ad"}
    assert "info" not in mapped.attributes
    assert mapped.attributes["sAMAccountName"] == "sales"  # apply: always flows on update too


def test_a_default_fills_a_null_source_on_create_only() -> None:
    rules = [
        {"target": "sAMAccountName", "type": "direct", "source": "mailNickname", "default": "fallback"},
        {"target": "info", "type": "direct", "source": "classification", "default": "unclassified"},
    ]
    null = mapper(rules).map(GROUP, {"displayName": "Sales"})
    assert null.create_only == {"sAMAccountName": "fallback", "info": "unclassified"}
    assert null.attributes["info"] is None  # on update a null still clears the attribute, as before defaults
    present = mapper(rules).map(GROUP, {"displayName": "Sales", "mailNickname": "s", "classification": "high"})
    assert present.create_only == {"sAMAccountName": "s"}
    assert present.attributes["info"] == "high"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a" * 257, "is 257 characters long, AD allows 256"),
        ("Sales/EMEA", "contains '/': AD refuses any of"),
        ("a[b]", "contains '[', ']'"),
    ],
)
def test_an_invalid_samaccountname_is_that_groups_error(value: str, problem: str) -> None:
    rules = [{"target": "sAMAccountName", "type": "direct", "source": "mailNickname"}]
    with pytest.raises(MappingError, match=r"^sAMAccountName: ") as caught:
        mapper(rules).map(GROUP, {"displayName": "Sales", "mailNickname": value})
    assert problem in str(caught.value)
    assert mapper(rules).map(GROUP, {"displayName": "Sales", "mailNickname": "a" * 256}).create_only


def test_mapping_sources_are_what_the_effective_mappings_read_as_graph_selects_them() -> None:
    rules = ProvisioningJob.model_validate(
        {
            "mappings": [
                {"target": "info", "type": "direct", "source": "MAILNICKNAME"},
                {"target": "description", "type": "expression", "expression": f"Coalesce([{EXTENSION}], [mail])"},
            ]
        }
    ).mappings
    assert mapping_sources(rules) == sorted({"displayName", "id", "mailNickname", EXTENSION, "mail"})


def test_graph_group_properties_and_directory_extensions() -> None:
    assert {"displayName", "mailNickname", "securityEnabled", "id"} <= GROUP_PROPERTIES
    assert is_directory_extension(EXTENSION)
    assert not is_directory_extension("extension_0123_costCenter")
    assert not is_directory_extension("displayName")


# -- refused at load, each naming the mapping -------------------------------------------------------
SHAPE = [
    ([{"target": "info", "type": "constant"}], "mappings[0] (info): type constant needs value"),
    (
        [{"target": "info", "type": "direct", "source": "mail", "expression": "[mail]"}],
        "mappings[0] (info): type direct takes source, not expression",
    ),
    ([{"target": "info", "type": "constant", "value": "x", "default": "y"}], "mappings[0] (info): type constant"),
    ([{"target": "info", "type": "lookup", "value": "x"}], "mappings[0] (info): type: Input should be"),
    ([{"target": "info", "type": "constant", "value": "x", "apply": "once"}], "mappings[0] (info): apply: Input"),
    ([{"target": "info", "type": "constant", "value": "x", "flow": "y"}], "mappings[0] (info): flow: Extra inputs"),
    ([{"target": "bad name", "type": "constant", "value": "x"}], "mappings[0] (bad name): target: 'bad name' is not"),
    (
        [{"target": "info", "type": "constant", "value": "x"}, {"target": "Info", "type": "direct", "source": "mail"}],
        "mappings[1] (Info): Info is mapped twice (also mappings[0])",
    ),
    (["info"], "mappings[0]: Input should be a valid dictionary"),
]
# What the writer or AD owns: the list and what writers/reconcile.py writes itself.
OWNED = (
    "objectGUID", "objectSid", "member", "objectClass", "distinguishedName", "name", "groupType",
    "sAMAccountType", "msDS-ExternalDirectoryObjectId", "adminDescription", "memberOf", "objectCategory",
    "isCriticalSystemObject",
)  # fmt: skip
SEMANTIC = [
    *(
        ([{"target": target, "type": "constant", "value": "x"}], f"mappings[0] ({target}): cannot be mapped: ")
        for target in (*OWNED, "OBJECTGUID")
    ),
    ({"objectGUID": '"x"'}, "mappings[0] (objectGUID): cannot be mapped: set by AD"),
    (
        [{"target": "info", "type": "direct", "source": "mailNick"}],
        "mappings[0] (info): source attribute 'mailNick' is not a property of a Graph group",
    ),
    (
        [{"target": "info", "type": "expression", "expression": 'Join(" ", [displayNam], "x")'}],
        "mappings[0] (info): source attribute 'displayNam' is not a property of a Graph group nor a directory "
        "extension (extension_<appId>_<name>); did you mean 'displayName'?",
    ),
    ({"description": "Left([description]"}, "mappings[0] (description): "),
    ({"info": "Nope([displayName])"}, "mappings[0] (info): unknown function 'Nope'"),
    (
        [{"target": "cn", "type": "direct", "source": "displayName", "apply": "on_create"}],
        "mappings[0] (cn): apply must be always",
    ),
    (
        [{"target": "parentDistinguishedName", "type": "direct", "source": EXTENSION, "default": "OU=x"}],
        "mappings[0] (parentDistinguishedName): default does not apply",
    ),
    (
        [{"target": "sAMAccountName", "type": "constant", "value": "a,b"}],
        "mappings[0] (sAMAccountName): sAMAccountName 'a,b' contains ','",
    ),
    (
        [{"target": "sAMAccountName", "type": "direct", "source": "mail", "default": "x" * 300}],
        "mappings[0] (sAMAccountName): sAMAccountName",
    ),
]


def test_every_target_the_writer_or_ad_owns_is_refused() -> None:
    assert {target.casefold() for target in OWNED} == set(REFUSED_TARGETS)


@pytest.mark.parametrize(("mappings", "expected"), SHAPE + SEMANTIC)
def test_a_refused_configuration_names_the_mapping_at_load(tmp_path: Path, mappings: object, expected: str) -> None:
    assert expected in load_problems(config_file(tmp_path, mappings))


def check_lines(path: Path) -> list[str]:
    result = CliRunner().invoke(expr, ["check", str(path)])
    assert result.exit_code == 2, result.output
    return [line for line in result.stderr.splitlines() if line.startswith("mappings")]


@pytest.mark.parametrize(("mappings", "_"), SEMANTIC)
def test_expr_check_and_the_load_report_the_same_mapping_errors(tmp_path: Path, mappings: object, _: str) -> None:
    path = config_file(tmp_path, mappings)
    loaded = [line.strip() for line in load_problems(path).splitlines()[1:]]
    assert check_lines(path) == loaded


@pytest.mark.parametrize(("mappings", "_"), SHAPE)
def test_expr_check_reports_the_shape_errors_the_load_reports(tmp_path: Path, mappings: object, _: str) -> None:
    path = config_file(tmp_path, mappings)
    loaded = load_problems(path)
    lines = check_lines(path)
    assert lines and all(line in loaded for line in lines)


def test_a_file_with_every_kind_of_problem_is_reported_whole_by_expr_check(tmp_path: Path) -> None:
    mappings = [
        {"target": "info", "type": "constant"},
        {"target": "objectGUID", "type": "constant", "value": "x"},
        {"target": "cn", "type": "direct", "source": "displayName", "apply": "on_create"},
        {"target": "extensionAttribute2", "type": "expression", "expression": "Trim([displayNam])"},
        {"target": "extensionAttribute3", "type": "expression", "expression": "Nope([displayName])"},
    ]
    lines = check_lines(config_file(tmp_path, mappings))
    assert [line.split(":")[0] for line in lines] == [
        "mappings[0] (info)",
        "mappings[1] (objectGUID)",
        "mappings[2] (cn)",
        "mappings[3] (extensionAttribute2)",
        "mappings[4] (extensionAttribute3)",
    ]


def test_a_configuration_with_valid_rules_loads(tmp_path: Path) -> None:
    rules = [
        {"target": "description", "type": "expression", "expression": 'Join(" ", [description], "(cloud)")'},
        {"target": "info", "type": "constant", "value": "provisioned by e2ad", "apply": "on_create"},
        {"target": "parentDistinguishedName", "type": "expression", "expression": SEED_SWITCH},
        {"target": "sAMAccountName", "type": "direct", "source": "mailNickname", "default": "fallback"},
        {"target": "extensionAttribute1", "type": "direct", "source": EXTENSION},
    ]
    settings = load_settings(config_file(tmp_path, rules), environ={})
    assert [rule.target for rule in settings.mappings] == [rule["target"] for rule in rules]
    assert settings.mappings[3].apply == "on_create"
    result = CliRunner().invoke(expr, ["check", str(config_file(tmp_path, rules))])
    assert (result.exit_code, result.stdout.strip()) == (0, f"{tmp_path / 'e2ad.yaml'}: 5 mapping(s) OK")
