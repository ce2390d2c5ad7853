"""`e2ad restart [--force-deletes]`: Cloud Sync's Restart sync, as a ControlCommand on e2ad.control.

Every stage applies it (entra-provisioning.md §4.3): ingest clears its delta cursors and runs a
full delta round, the processors end the deletion guard's quarantine, the writers leave theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from e2ad.control import issued_by, run_once, send
from schemas.control import ControlCommand

if TYPE_CHECKING:
    from e2ad.cli import Context


@click.command()
@click.option(
    "--force-deletes",
    is_flag=True,
    help="Deletes above the threshold go through: staged deletes are released and the full round is not guarded.",
)
@click.pass_obj
def restart(context: Context, force_deletes: bool) -> None:
    """Restart sync: a full delta round, and every quarantine cleared (the processors' and the writers')."""
    command = ControlCommand(command="restart", force_deletes=force_deletes, issued_by=issued_by())
    settings = context.settings().kafka
    run_once(settings, lambda: send(settings, command))
    click.echo(f"sent restart {command.command_id}: {describe_restart(command)}")


def describe_restart(command: ControlCommand) -> str:
    """What the restart asks of the stages, in one line."""
    line = "ingest clears its delta cursors and runs a full delta round; quarantines end"
    if command.force_deletes:
        return line + "; staged deletes are released and the round's deletes pass the threshold unguarded"
    return line + "; staged deletes are dropped (their AD groups stay) and the round's deletes are guarded"
