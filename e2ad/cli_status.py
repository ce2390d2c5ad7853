"""`e2ad status [--json]` (one look) and `e2ad monitor` (the same, live): from Kafka, so from any machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from aiokafka.errors import KafkaError
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from e2ad.control import run_once
from e2ad.status import read_snapshot, stage_topics
from e2ad.status_view import StatusView, describe, footer, headline, sparkline, view, written
from runtime.outages import KafkaUnreachable, one_shot, unreachable
from schemas import topics

if TYPE_CHECKING:
    from e2ad.cli import Context
    from schemas.config import KafkaSettings

# Frames of history the monitor's sparklines show.
HISTORY = 30


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the job, every stage, deletes, dead letters.")
@click.pass_obj
def status(context: Context, as_json: bool) -> None:
    """The job's state, each stage's members, lag and pace, delta rounds, subscriptions, staged deletes, dead letters.

    Exits 0 when the job is healthy and every stage runs, 1 otherwise.
    """
    settings = context.settings().kafka
    watched = stage_topics()
    snapshot = run_once(settings, lambda: read_snapshot(settings, watched))
    shown = view(snapshot, watched)
    if as_json:
        click.echo(json.dumps(topics.jsonable(shown), indent=2))
    else:
        for line in describe(shown):
            click.echo(line)
    raise SystemExit(0 if shown.healthy else 1)


@click.command("monitor")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.2), help="Seconds a frame.")
@click.pass_obj
def monitor(context: Context, interval: float) -> None:
    """`e2ad status` as a live view, refreshed every --interval, with each stage's records/s as a sparkline."""
    settings = context.settings().kafka
    console = Console()
    with contextlib.suppress(KeyboardInterrupt), Live(console=console, auto_refresh=False) as live:
        run_once(settings, lambda: _watch(settings, interval, lambda frame: live.update(frame, refresh=True)))


async def _watch(settings: KafkaSettings, interval: float, show: Callable[[RenderableType], None]) -> None:
    watched = stage_topics()
    paces = {stage.name: deque([0.0] * HISTORY, maxlen=HISTORY) for stage in watched}
    previous = None
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            snapshot = await one_shot(settings, lambda: read_snapshot(settings, watched))
        except (KafkaUnreachable, KafkaError) as exc:
            reason = str(exc) if isinstance(exc, KafkaUnreachable) else unreachable(settings, str(exc))
            show(Text(f"Kafka: {reason}; trying again", style="red"))
        else:
            if previous is not None:
                seconds = max((snapshot.at - previous.at).total_seconds(), 1e-3)
                for stage in watched:
                    paces[stage.name].append(
                        (written(snapshot, stage.produces) - written(previous, stage.produces)) / seconds
                    )
            previous = snapshot
            show(frame(view(snapshot, watched), {name: list(values) for name, values in paces.items()}))
        await asyncio.sleep(max(interval - (loop.time() - started), 0.0))


def frame(status: StatusView, paces: dict[str, list[float]]) -> Group:
    """One frame of the monitor: the job, a row per stage with its pace frame by frame, the rest below."""
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("stage", "running", "lag", "records/s (1 min)", "records/s, frame by frame"):
        table.add_column(column, justify="right" if column in ("lag", "records/s (1 min)") else "left", no_wrap=True)
    table.add_column("last error", overflow="fold")  # the only column that may take several lines
    for stage in status.stages:
        pace = paces.get(stage.name, [])
        table.add_row(
            stage.name,
            ", ".join(stage.members) if stage.members else Text("not running", style="red"),
            str(stage.total_lag),
            f"{stage.records_per_second:.2f}",
            f"{sparkline(pace)} {pace[-1] if pace else 0:.1f}",
            stage.last_error or "",
        )
    style = "green" if status.healthy else "red"
    heading = Text(f"{status.at.isoformat(timespec='seconds')}  {headline(status)}", style=style)
    return Group(heading, table, *(Text(line) for line in footer(status)))
