"""`e2ad deletes list|approve|reject` and `e2ad restart`: argument rules and the commands they send.

Kafka is faked at the edge (the staged set read, the command sent); tests/integration/test_controls.py
runs the same commands against the broker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from e2ad import cli_deletes, cli_restart
from e2ad.cli import main
from schemas import topics
from schemas.config import KafkaSettings
from schemas.control import ControlCommand
from schemas.deletes import StagedDelete
from schemas.desired import DesiredGroup

TRIP = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


def staged_delete(group_id: str, display_name: str | None = None, *, minutes: int = 0) -> StagedDelete:
    at = TRIP + dt.timedelta(minutes=minutes)
    return StagedDelete(
        group_id=group_id,
        display_name=display_name,
        reason="deleted",
        arrived_at=at - dt.timedelta(seconds=30),
        staged_at=at,
        tripped_at=TRIP,
        burst_first_arrival=TRIP - dt.timedelta(minutes=4),
        burst_last_arrival=TRIP,
        desired=DesiredGroup(group_id=group_id, anchor=f"anchor-{group_id}", state="absent", reason="deleted"),
    )


class FakeKafka:
    """The staged set the commands read, and the commands they send."""

    def __init__(self) -> None:
        self.staged: dict[str, StagedDelete] = {}
        self.sent: list[ControlCommand] = []

    def stage(self, *deletes: StagedDelete) -> None:
        self.staged.update({d.group_id: d for d in deletes})


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()

    def run_once(settings: object, command: Callable[[], Awaitable[Any]]) -> Any:
        return asyncio.run(command())  # no probe of a broker

    async def read_staged(settings: object) -> dict[str, StagedDelete]:
        return dict(fake.staged)

    async def send(settings: object, command: ControlCommand) -> None:
        fake.sent.append(command)

    for module in (cli_deletes, cli_restart):
        monkeypatch.setattr(module, "run_once", run_once)
        monkeypatch.setattr(module, "send", send)
    monkeypatch.setattr(cli_deletes, "read_staged", read_staged)
    return fake


def e2ad(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"E2AD_CONFIG": None})


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("args", [(), ("--all", "g1")], ids=["neither", "both"])
def test_a_decision_needs_group_ids_or_all_but_not_both(
    fake_kafka: FakeKafka, decision: str, args: tuple[str, ...]
) -> None:
    fake_kafka.stage(staged_delete("g1"))
    result = e2ad("deletes", decision, *args)
    assert result.exit_code == 2
    assert "name the staged groups (GROUP_ID …) or give --all" in result.output
    assert fake_kafka.sent == []


def test_approve_names_the_staged_groups_once_each_and_prints_the_command_id(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g1", "Sales"), staged_delete("g2"), staged_delete("g3"))
    result = e2ad("deletes", "approve", "g2", "G1", "g2")
    assert result.exit_code == 0, result.output
    [command] = fake_kafka.sent
    assert command.command == "approve-deletes" and command.groups == ["g2", "g1"]
    assert command.issued_by and "@" in command.issued_by
    assert result.output == (
        f"sent approve-deletes {command.command_id}: release 2 staged deletes (g2, Sales g1) "
        "to ad.desired: their AD groups are deleted\n"
    )


def test_reject_all_sends_groups_none(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g1"), staged_delete("g2"))
    result = e2ad("deletes", "reject", "--all")
    assert result.exit_code == 0, result.output
    [command] = fake_kafka.sent
    assert command.command == "reject-deletes" and command.groups is None
    assert (
        f"sent reject-deletes {command.command_id}: drop every staged delete (2 staged now): their AD groups stay"
        in (result.output)
    )


def test_approve_all_approves_the_deletes_staged_now_not_a_later_burst(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g2"), staged_delete("g1"))
    result = e2ad("deletes", "approve", "--all")
    assert result.exit_code == 0, result.output
    [command] = fake_kafka.sent
    # The ids as listed now: a delete staged after this read stays staged when the command is applied.
    assert command.command == "approve-deletes" and command.groups == ["g1", "g2"]


def test_ids_that_are_not_staged_are_refused_by_name_unless_forced(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g1"))
    refused = e2ad("deletes", "reject", "g1", "typo-1", "gone-2")
    assert refused.exit_code == 1
    assert "not staged on ad.staged-deletes: typo-1, gone-2" in refused.output
    assert fake_kafka.sent == []

    forced = e2ad("deletes", "reject", "--force", "g1", "typo-1")
    assert forced.exit_code == 0, forced.output
    assert [c.groups for c in fake_kafka.sent] == [["g1", "typo-1"]]


def test_all_with_nothing_staged_sends_nothing_unless_forced(fake_kafka: FakeKafka) -> None:
    result = e2ad("deletes", "approve", "--all")
    assert result.exit_code == 0
    assert result.output == "nothing is staged on ad.staged-deletes: no command sent\n"
    assert fake_kafka.sent == []

    assert e2ad("deletes", "approve", "--all", "--force").exit_code == 0
    assert [(c.command, c.groups) for c in fake_kafka.sent] == [("approve-deletes", None)]


def test_many_groups_are_summarised_in_one_line(fake_kafka: FakeKafka) -> None:
    ids = [f"g{i}" for i in range(8)]
    fake_kafka.stage(*(staged_delete(g) for g in ids))
    result = e2ad("deletes", "approve", *ids)
    assert "release 8 staged deletes (g0, g1, g2, g3, g4 and 3 more)" in result.output


def test_list_says_when_nothing_is_staged(fake_kafka: FakeKafka) -> None:
    result = e2ad("deletes", "list")
    assert (result.exit_code, result.output) == (0, "nothing is staged on ad.staged-deletes\n")
    assert json.loads(e2ad("deletes", "list", "--json").output) == []


def test_list_prints_a_table_sorted_by_trip_then_display_name(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g-b", "beta", minutes=1), staged_delete("g-a", "Alpha"), staged_delete("g-c"))
    result = e2ad("deletes", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["GROUP", "ID", "DISPLAY", "NAME"]
    assert [line.split()[0] for line in lines[1:4]] == ["g-c", "g-a", "g-b"]  # no name sorts first
    assert lines[2].split()[:5] == ["g-a", "Alpha", "deleted", "2026-12-01", "09:30:00Z"]
    assert "2026-12-01 09:30:00Z (2026-12-01 09:26:00Z – 2026-12-01 09:30:00Z)" in lines[2]
    assert lines[4].startswith("3 staged: `e2ad deletes approve --all`")


def test_list_json_is_one_object_per_staged_delete(fake_kafka: FakeKafka) -> None:
    fake_kafka.stage(staged_delete("g1", "Sales"))
    [item] = json.loads(e2ad("deletes", "list", "--json").output)
    assert item == {
        "group_id": "g1",
        "display_name": "Sales",
        "anchor": "anchor-g1",
        "reason": "deleted",
        "held_because": "delete threshold exceeded",
        "arrived_at": "2026-12-01T09:29:30+00:00",
        "staged_at": "2026-12-01T09:30:00+00:00",
        "tripped_at": "2026-12-01T09:30:00+00:00",
        "burst_first_arrival": "2026-12-01T09:26:00+00:00",
        "burst_last_arrival": "2026-12-01T09:30:00+00:00",
    }


@pytest.mark.parametrize("force", [False, True])
def test_restart_sends_one_restart_command(fake_kafka: FakeKafka, force: bool) -> None:
    result = e2ad("restart", *(["--force-deletes"] if force else []))
    assert result.exit_code == 0, result.output
    [command] = fake_kafka.sent
    assert (command.command, command.force_deletes, command.groups) == ("restart", force, None)
    assert result.output.startswith(f"sent restart {command.command_id}: ingest clears its delta cursors")
    assert ("pass the threshold unguarded" in result.output) is force


def test_an_unusable_staged_record_is_named_and_the_others_listed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = staged_delete("g1")

    async def latest(settings: object, topic: str) -> dict[bytes, bytes]:
        return {b"g1": topics.encode(good), b"broken": b'{"group_id": 7}'}

    monkeypatch.setattr(cli_deletes.kafka, "read_latest", latest)
    staged = asyncio.run(cli_deletes.read_staged(KafkaSettings()))
    assert list(staged) == ["g1"]
    assert "unusable record for broken on ad.staged-deletes: group_id" in capsys.readouterr().err
