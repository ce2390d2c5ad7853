"""`e2ad logs`: its options, which records it selects and where it reads from, names, recommendations, rendering."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from click.testing import CliRunner
from rich.console import Console

from e2ad.cli import main
from e2ad.logs import (
    MAPPINGS,
    Entry,
    Selection,
    group_names,
    groups_named,
    is_group_id,
    newest,
    parse_time,
    recommendation,
    render,
    start_offset,
)
from schemas import topics
from schemas.desired import anchor_of
from schemas.results import ModifiedAttribute, ProvisioningResult, ProvisioningStep

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
GROUP, OTHER = "7d1c4a9e-2b3f-4e5a-8c6d-0000000000a1", "7d1c4a9e-2b3f-4e5a-8c6d-0000000000b2"
DN = "CN=Sales,OU=Groups,DC=e2ad,DC=test"


def logged(group_id: str = GROUP, minutes_ago: int = 0, **fields: object) -> Entry:
    values: dict[str, object] = {"action": "update", "status": "success", **fields}
    result = ProvisioningResult(
        group_id=group_id, anchor=anchor_of(group_id), at=NOW - dt.timedelta(minutes=minutes_ago), **values
    )  # type: ignore[arg-type]
    return Entry(result, topics.encode(result))


def failed(code: int | None, action: str = "create", **fields: object) -> ProvisioningResult:
    return logged(action=action, status="failure", dn=DN, error_code=code, error_message="failed", **fields).result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("15m", NOW - dt.timedelta(minutes=15)),
        (" 1h", NOW - dt.timedelta(hours=1)),
        ("2d", NOW - dt.timedelta(days=2)),
        ("2026-12-01T08:30:00Z", dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)),
        ("2026-12-01T09:30:00+01:00", dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)),
        ("2026-12-01 08:30", dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)),  # no zone: UTC
    ],
)
def test_a_time_is_a_duration_before_now_or_iso_8601(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "1w", "-1h", "1.5h", ""])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"neither a duration \(30s, 15m, 1h, 2d\) nor an ISO 8601 time"):
        parse_time(text, NOW)


def test_a_guid_names_a_group_by_id_anything_else_by_display_name() -> None:
    assert is_group_id(GROUP) and is_group_id(GROUP.upper())
    assert not is_group_id("Sales") and not is_group_id("7d1c4a9e")


def test_a_record_is_selected_when_every_condition_given_holds() -> None:
    failure = logged(status="failure", action="create", minutes_ago=10).result
    assert Selection()(failure)
    assert Selection(group_ids=frozenset({GROUP}), statuses=frozenset({"failure", "warning"}))(failure)
    assert not Selection(group_ids=frozenset({OTHER}))(failure)
    assert not Selection(actions=frozenset({"delete"}))(failure)
    assert not Selection(statuses=frozenset({"success"}))(failure)
    assert Selection(since=NOW - dt.timedelta(minutes=10))(failure)  # --since includes its moment
    assert not Selection(since=NOW - dt.timedelta(minutes=9))(failure)
    assert not Selection(until=NOW - dt.timedelta(minutes=10))(failure)  # --until excludes it
    assert Selection(until=NOW - dt.timedelta(minutes=9))(failure)


def test_only_the_time_window_is_not_a_selection_by_content() -> None:
    assert not Selection(since=NOW).by_content
    assert Selection(until=NOW).by_content and Selection(statuses=frozenset({"failure"})).by_content
    assert Selection(group_ids=frozenset()).by_content


def test_a_partition_is_read_from_since_and_no_further_back_than_the_tail() -> None:
    assert start_offset(beginning=100, end=900, since=None, tail=None) == 100
    assert start_offset(beginning=100, end=900, since=850, tail=None) == 850
    assert start_offset(beginning=100, end=900, since=50, tail=None) == 100  # expired before it
    assert start_offset(beginning=100, end=900, since=None, tail=50) == 850
    assert start_offset(beginning=100, end=900, since=880, tail=50) == 880
    assert start_offset(beginning=100, end=120, since=None, tail=50) == 100


def test_newest_keeps_the_last_n_by_decision_time_oldest_first() -> None:
    entries = [logged(minutes_ago=m) for m in (5, 30, 1, 10)]
    assert [e.result.at for e in newest(entries, 2)] == [NOW - dt.timedelta(minutes=5), NOW - dt.timedelta(minutes=1)]
    assert len(newest(entries, 50)) == 4


def test_names_come_from_the_desired_state_else_from_what_the_log_wrote() -> None:
    renamed = [
        logged(GROUP, 20, modified=[ModifiedAttribute(name="displayName", new="Sales")]),
        logged(GROUP, 10, modified=[ModifiedAttribute(name="displayName", old="Sales", new="Sales EMEA")]),
        logged(OTHER, 5, action="delete", modified=[ModifiedAttribute(name="description", new="x")]),
    ]
    assert group_names({}, renamed) == {GROUP: "Sales EMEA"}
    assert group_names({GROUP: "Sales Global", OTHER: None}, renamed) == {GROUP: "Sales Global"}


def test_a_display_name_matches_exactly_in_any_case_and_may_name_several_groups() -> None:
    names = {GROUP: "Finance", OTHER: "finance", "c": "Finance Team"}
    assert groups_named(" FINANCE ", names) == [GROUP, OTHER]
    assert groups_named("Fin", names) == []


def test_recommendations_name_the_object_or_container_to_fix() -> None:
    assert "create, delete and write group objects on OU=Groups,DC=e2ad,DC=test" in str(recommendation(failed(50)))
    assert "on CN=Sales,OU=Groups" in str(recommendation(failed(50, action="update")))
    assert str(recommendation(failed(32))).startswith("OU=Groups,DC=e2ad,DC=test does not exist")
    assert "outside the naming context" in str(recommendation(failed(10)))
    assert "AD's constraints refuse a value of CN=Sales" in str(recommendation(failed(19)))
    assert f"already has its name at {DN}" in str(recommendation(failed(68)))
    assert f"`e2ad provision {GROUP} --apply`" in str(recommendation(failed(None)))  # refused by e2ad
    mapping = ProvisioningStep(name="processing", status="failure", description="attribute mapping failed: x")
    assert recommendation(failed(None, action="skip", steps=[mapping])) == MAPPINGS


def test_no_recommendation_for_a_code_without_one_or_a_record_that_did_not_fail() -> None:
    assert recommendation(failed(80)) is None
    assert recommendation(logged(error_code=50).result) is None


def test_plain_rendering_shows_identity_steps_changes_members_and_the_fix_one_line_each() -> None:
    result = logged(
        action="update",
        status="failure",
        dn=DN,
        steps=[ProvisioningStep(name="export", status="failure", description="failed: modify " + DN)],
        modified=[ModifiedAttribute(name="description", old="old text", new=None)],
        members_added=3,
        error_code=50,
        error_message=f"modify {DN} failed: 50 insufficientAccessRights",
        writer="writer-1",
        duration_ms=12.5,
    )
    out = io.StringIO()
    render([result], {GROUP: "Sales"}, Console(file=out, width=40, highlight=False, markup=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == f"2026-12-02 12:00:00Z  update failure  Sales {GROUP}"
    assert lines[1:7] == [
        f"  dn                    {DN}",
        f"  step export           failure: failed: modify {DN}",
        "  modified description  old text → (none)",
        "  members               +3 added, -0 removed",
        f"  error                 LDAP 50: modify {DN} failed: 50 insufficientAccessRights",
        f"  recommendation        {recommendation(result.result)}",
    ]
    assert lines[7] == "  decided by            writer-1 in 12.5 ms"


def test_an_unknown_name_says_so() -> None:
    out = io.StringIO()
    render([logged()], {}, Console(file=out, highlight=False, markup=False))
    assert out.getvalue().splitlines()[0].endswith(f"(name unknown) {GROUP}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "Invalid value for '--since': 'yesterday' is neither a duration"),
        (["--until", "soon"], "Invalid value for '--until': 'soon' is neither"),
        (["--since", "1h", "--until", "2h"], "Invalid value for '--until': "),
        (["--follow", "--until", "1h"], "Invalid value for '--until': --follow prints records as they arrive"),
        (["--group", " "], "Invalid value for '--group': names no group"),
        (["--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1"),
        (["--status", "failed"], "Invalid value for '--status': 'failed' is not one of 'success', 'failure'"),
        (["--action", "StagedDeletes"], "Invalid value for '--action': 'StagedDeletes' is not one of"),
    ],
)
def test_bad_option_values_are_refused_naming_the_option(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["logs", *args], env={"E2AD_CONFIG": None})
    assert result.exit_code == 2 and message in result.output, result.output
