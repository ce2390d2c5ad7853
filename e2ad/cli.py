"""The `e2ad` command line: a thin layer over the stages and the local services."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click
from aiokafka.errors import KafkaConnectionError

from e2ad.cli_check import check
from e2ad.cli_config import config
from e2ad.cli_deletes import deletes
from e2ad.cli_explain import explain
from e2ad.cli_expr import expr
from e2ad.cli_logs import logs
from e2ad.cli_provision import provision
from e2ad.cli_quarantine import quarantine
from e2ad.cli_replay import replay
from e2ad.cli_restart import restart
from e2ad.cli_status import monitor, status
from e2ad.cli_topics import topics
from e2ad.settings import load_settings
from runtime.config import ConfigError, default_state_dir
from runtime.logs import configure_logging
from runtime.outages import Backoff, KafkaUnreachable, one_shot, stopped_within, unreachable, wait_for_kafka
from schemas.config import KafkaSettings, Settings

if TYPE_CHECKING:
    from harness.services import LocalServices

log = logging.getLogger("e2ad")
# SIGTERM ends every stage within 5 s: STOP_SECONDS to stop cleanly, then CANCEL_SECONDS cancelled.
STOP_SECONDS = 3.5
CANCEL_SECONDS = 1.0


class Context:
    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path

    def settings(self) -> Settings:
        try:
            return load_settings(self.config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def services(self) -> LocalServices:
        return _harness("services").LocalServices(self.settings().state_dir)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="e2ad", prog_name="e2ad")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="E2AD_CONFIG",
    help="YAML configuration file (E2AD_… variables override it).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """e2ad: provision Entra ID security groups into Active Directory, event-driven, through Kafka."""
    ctx.obj = Context(config_path)


@main.group()
def services() -> None:
    """The local services: the embedded Kafka broker and a Samba AD DC on loopback."""


@services.command("up")
@pass_context
def services_up(ctx: Context) -> None:
    """Install (when missing), start and wait for both; print the settings that reach them."""
    configure_logging("INFO", "services")
    try:
        endpoints = asyncio.run(ctx.services().up())
    except _harness("services").ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    for name, value in endpoints.as_environment().items():
        click.echo(f"{name}={value}")


@services.command("down")
@pass_context
def services_down(ctx: Context) -> None:
    """Stop both by their pids (the broker keeps its data, the DC its directory)."""
    configure_logging("INFO", "services")
    ctx.services().down()


@services.command("status")
@pass_context
def services_status(ctx: Context) -> None:
    click.echo(json.dumps(ctx.services().status(), indent=2))


@services.command("reset-dc")
@pass_context
def services_reset_dc(ctx: Context) -> None:
    """Throw the local DC's data away; the next start copies the provisioned template."""
    ctx.services().reset_dc()


@main.command()
@pass_context
def process(ctx: Context) -> None:
    """Run the processors (faust): graph.changes → scope → map → ad.desired."""
    from processors.app import StateLost, run_processors
    from runtime.kafka import ensure_topics

    settings = ctx.settings()
    configure_logging(settings.log_level, "process")
    if not _kafka_answers(settings.kafka):
        return  # signalled while waiting; faust installs its own signal handlers once it runs
    asyncio.run(ensure_topics(settings.kafka))
    datadir = (settings.state_dir or default_state_dir()) / "processors"
    try:
        run_processors(settings, datadir)
    except StateLost as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@pass_context
def up(ctx: Context) -> None:
    """Everything on embedded defaults: local broker, local AD DC, all stages; Ctrl-C stops it all.

    Without Graph credentials in the configuration, a simulated tenant feeds the pipeline.
    """
    run_up, service_error = _harness("embedded").run_up, _harness("services").ServiceError
    settings = ctx.settings()
    configure_logging(settings.log_level, "up")
    try:
        _run_until_signalled(lambda stop: run_up(settings, stop))
    except (service_error, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@pass_context
def ingest(ctx: Context) -> None:
    """Run the webhook and the graph worker (subscriptions, delta rounds) against the configured tenant."""
    from ingest.graph_transport import GraphTransport, GraphTransportError
    from ingest.service import run_ingest

    settings = ctx.settings()
    if not settings.graph.configured:
        raise click.ClickException("graph.tenant_id is not set: ingest needs a tenant (or use `e2ad up`)")
    configure_logging(settings.log_level, "ingest")
    try:
        GraphTransport.from_settings(settings.graph)  # a wrong CA or proxy: now, not after waiting for Kafka
        _run_stage(settings.kafka, lambda stop: run_ingest(settings, stop))
    except GraphTransportError as exc:  # graph.ca_bundle or a proxy variable, named in the message
        raise click.ClickException(str(exc)) from None


@main.command()
@pass_context
def write(ctx: Context) -> None:
    """Run one AD writer; several share ad.desired's partitions."""
    from writers.service import run_writer

    settings = ctx.settings()
    configure_logging(settings.log_level, "write")
    _run_stage(settings.kafka, lambda stop: run_writer(settings, stop))


@main.command()
@pass_context
def reconcile(ctx: Context) -> None:
    """Converge AD once to every group's latest desired state (repairs drift made by hand)."""
    from writers.errors import DirectoryUnavailable
    from writers.sweep import NotProvisioning, reconcile_all

    settings = ctx.settings()
    configure_logging(settings.log_level, "reconcile")
    try:
        statuses = asyncio.run(one_shot(settings.kafka, lambda: reconcile_all(settings)))
    except DirectoryUnavailable as exc:
        raise click.ClickException(f"AD is unavailable: {exc}") from None
    except NotProvisioning as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "no desired states")
    if statuses["failure"] or statuses["unusable"] or statuses["unconverged"]:
        sys.exit(1)


main.add_command(check)
main.add_command(expr)
main.add_command(quarantine)
main.add_command(deletes)
main.add_command(restart)
main.add_command(config)
main.add_command(explain)
main.add_command(provision)
main.add_command(logs)
main.add_command(topics)
main.add_command(replay)
main.add_command(status)
main.add_command(monitor)


def _harness(module: str) -> ModuleType:
    """A module of the development harness (local services, `e2ad up`), which the image leaves out."""
    try:
        return importlib.import_module(f"harness.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("harness", f"harness.{module}"):
            raise
        raise click.ClickException(
            "this command needs e2ad's development harness (local broker and DC, Graph stand-in), which this "
            "installation leaves out: run the stages (e2ad ingest, process, write) against your Kafka and DCs"
        ) from None


def _run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `e2ad up` until SIGINT or SIGTERM, then let it stop its children, however long that takes."""

    async def supervise() -> None:
        await run(_stop_on_signals())

    asyncio.run(supervise())


def _run_stage(kafka_settings: KafkaSettings, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a stage until SIGINT or SIGTERM, then let it stop cleanly, within STOP_SECONDS + CANCEL_SECONDS.

    The stage starts once Kafka answers; Kafka lost while it starts or runs (a connection error out
    of the stage) is reported in one line and the stage starts again when Kafka is back.
    """

    async def supervise() -> None:
        stop = _stop_on_signals()
        backoff = Backoff()
        while await wait_for_kafka(kafka_settings, stop, backoff):
            try:
                await _bounded_after_stop(run(stop), stop)
                return
            except KafkaConnectionError as exc:
                delay = backoff.next()
                lost = unreachable(kafka_settings, f"lost while the stage started or ran ({exc})")
                log.warning("%s; starting the stage again in %s s", lost, f"{delay:g}")
                await stopped_within(stop, delay)

    asyncio.run(supervise())


def _kafka_answers(kafka_settings: KafkaSettings) -> bool:
    """Wait for Kafka (one line per backoff step); False when signalled first."""

    async def wait() -> bool:
        return await wait_for_kafka(kafka_settings, _stop_on_signals())

    return asyncio.run(wait())


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _bounded_after_stop(stage: Awaitable[None], stop: asyncio.Event) -> None:
    """Await the stage; once `stop` is set it gets STOP_SECONDS to finish, then it is cancelled."""
    task = asyncio.ensure_future(stage)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        await asyncio.wait({task}, timeout=STOP_SECONDS)
    stopping.cancel()
    if not task.done():
        log.warning("the stage did not stop within %.0f s of the signal: cancelling it", STOP_SECONDS)
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_SECONDS)
    if task.done() and not task.cancelled():
        task.result()  # the stage's own error, if any
