"""`e2ad deletes list|approve|reject`: the deletes the deletion threshold staged, and the operator's decision.

The list is read from ad.staged-deletes; a decision is a ControlCommand on e2ad.control, which the
processors apply once, when they run (processors/deletion_guard.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import click
import pydantic

from e2ad.control import issued_by, run_once, send
from runtime import kafka
from runtime.errors import error_lines
from schemas import topics
from schemas.config import KafkaSettings
from schemas.control import ControlCommand
from schemas.deletes import StagedDelete

if TYPE_CHECKING:
    from e2ad.cli import Context

Decision = Literal["approve-deletes", "reject-deletes"]
# How many groups a decision names in its one line of output.
NAMED_IN_OUTPUT = 5


@click.group()
def deletes() -> None:
    """Deletes held by the deletion threshold: list them, approve (delete in AD) or reject (keep in AD)."""


@deletes.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects, one per staged delete.")
@click.pass_obj
def list_(context: Context, as_json: bool) -> None:
    """What is staged on ad.staged-deletes, why, since when, and the trip that holds it."""
    settings = context.settings().kafka
    staged = sorted_staged(run_once(settings, lambda: read_staged(settings)))
    if as_json:
        click.echo(json.dumps([as_object(s) for s in staged], indent=2))
    elif not staged:
        click.echo(f"nothing is staged on {topics.AD_STAGED_DELETES}")
    else:
        click.echo(table(staged))
        click.echo(
            f"{len(staged)} staged: `e2ad deletes approve --all` deletes them in AD, "
            "`e2ad deletes reject --all` keeps them (or name GROUP_IDs)"
        )


def _decision_command(decision: Decision, summary: str) -> click.Command:
    @click.argument("group_ids", nargs=-1, metavar="[GROUP_ID]...")
    @click.option(
        "--all",
        "every",
        is_flag=True,
        help="approve: every delete staged now (with --force: when applied); reject: every one staged when applied.",
    )
    @click.option(
        "--force", is_flag=True, help="Send even when the groups are not staged now (nothing is checked then)."
    )
    @click.pass_obj
    def command(context: Context, group_ids: tuple[str, ...], every: bool, force: bool) -> None:
        settings = context.settings().kafka
        if every == bool(group_ids):
            raise click.UsageError(
                "name the staged groups (GROUP_ID …) or give --all" + (", not both" if every else "")
            )
        staged = run_once(settings, lambda: read_staged(settings))
        groups = chosen_groups(staged, group_ids, force=force)
        if groups is None and decision == "approve-deletes" and not force:
            # The deletes the operator saw, not also those a later burst stages before the command
            # is applied; --all --force approves whatever is staged then.
            groups = sorted(staged)
        if not staged and not force:
            click.echo(f"nothing is staged on {topics.AD_STAGED_DELETES}: no command sent")
            return
        control = ControlCommand(command=decision, groups=groups, issued_by=issued_by())
        run_once(settings, lambda: send(settings, control))
        click.echo(f"sent {decision} {control.command_id}: {describe_decision(control, staged)}")

    command.__doc__ = summary
    return command


def chosen_groups(staged: Mapping[str, StagedDelete], group_ids: Sequence[str], *, force: bool) -> list[str] | None:
    """The command's groups: None for all, else the ids given, once each, spelled as staged.

    An id that is not staged (a typo, a delete approved meanwhile) is refused, naming it, unless
    force: a command that silently does nothing would look like a decision made.
    """
    if not group_ids:
        return None
    by_lower = {group_id.lower(): group_id for group_id in staged}
    groups = list(dict.fromkeys(by_lower.get(g.strip().lower(), g.strip()) for g in group_ids))
    unknown = [g for g in groups if g not in staged]
    if unknown and not force:
        raise click.ClickException(
            f"not staged on {topics.AD_STAGED_DELETES}: {', '.join(unknown)} "
            "(`e2ad deletes list` shows what is; --force sends the command anyway)"
        )
    return groups


def describe_decision(command: ControlCommand, staged: Mapping[str, StagedDelete]) -> str:
    """What the command asks of the processors, in one line."""
    if command.command == "approve-deletes":
        verb, effect = "release", " to ad.desired: their AD groups are deleted"
    else:
        verb, effect = "drop", ": their AD groups stay"
    if command.groups is None:
        return f"{verb} every staged delete ({len(staged)} staged now){effect}"
    named = [_label(g, staged.get(g)) for g in command.groups[:NAMED_IN_OUTPUT]]
    more = len(command.groups) - len(named)
    listed = ", ".join(named) + (f" and {more} more" if more else "")
    noun = "staged delete" if len(command.groups) == 1 else "staged deletes"
    return f"{verb} {len(command.groups)} {noun} ({listed}){effect}"


def _label(group_id: str, staged: StagedDelete | None) -> str:
    return f"{staged.display_name} {group_id}" if staged and staged.display_name else group_id


approve = deletes.command("approve")(
    _decision_command("approve-deletes", "Release staged deletes to ad.desired: the writers delete the AD groups.")
)
reject = deletes.command("reject")(
    _decision_command("reject-deletes", "Drop staged deletes: the AD groups stay; nothing staged ends the quarantine.")
)


async def read_staged(settings: KafkaSettings) -> dict[str, StagedDelete]:
    """The staged set now: the latest record of each group on ad.staged-deletes, tombstones removed."""
    staged = {}
    for key, value in (await kafka.read_latest(settings, topics.AD_STAGED_DELETES)).items():
        try:
            record = topics.decode(StagedDelete, value)
        except pydantic.ValidationError as exc:
            click.echo(f"warning: unusable record for {key.decode(errors='replace')} on {topics.AD_STAGED_DELETES}:"
                       f" {error_lines(exc)[0]}", err=True)  # fmt: skip
            continue
        staged[record.group_id] = record
    return staged


def sorted_staged(staged: Mapping[str, StagedDelete]) -> list[StagedDelete]:
    """By trip, then display name, then id: the order an operator scans a trip's groups in."""
    return sorted(staged.values(), key=lambda s: (s.tripped_at, (s.display_name or "").casefold(), s.group_id))


def as_object(staged: StagedDelete) -> dict[str, Any]:
    """One staged delete in `deletes list --json` (README, Deletion controls); times are ISO 8601 UTC."""
    return {
        "group_id": staged.group_id,
        "display_name": staged.display_name,
        "anchor": staged.desired.anchor,
        "reason": staged.reason,
        "held_because": staged.held_because,
        "arrived_at": _iso(staged.arrived_at),
        "staged_at": _iso(staged.staged_at),
        "tripped_at": _iso(staged.tripped_at),
        "burst_first_arrival": _iso(staged.burst_first_arrival),
        "burst_last_arrival": _iso(staged.burst_last_arrival),
    }


def table(staged: Sequence[StagedDelete]) -> str:
    """A plain-text table, one line per staged delete."""
    header = ("GROUP ID", "DISPLAY NAME", "REASON", "STAGED SINCE", "TRIP (BURST FIRST – LAST DELETE)")
    rows = [
        (
            s.group_id,
            s.display_name or "-",
            s.reason or "-",
            _time(s.staged_at),
            f"{_time(s.tripped_at)} ({_time(s.burst_first_arrival)} – {_time(s.burst_last_arrival)})",
        )
        for s in staged
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    )


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
