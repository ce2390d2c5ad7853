"""`e2ad config`: the provisioning configuration the running stages follow, on e2ad.config.

validate checks a file as every stage's loader does; apply publishes its provisioning sections
(scope, mappings, membership, tokens, provisioning) as the next version; enable, disable and
delete change the state of the active one. The stages pick every change up while they run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from e2ad.control import issued_by, run_once
from e2ad.settings import load_settings
from processors.configuration import graph_group_attributes
from runtime import kafka
from runtime.active_config import read_active
from runtime.config import ConfigError
from schemas import topics
from schemas.active import ACTIVE_KEY, ActiveConfiguration, ConfigurationState, job_digest
from schemas.config import KafkaSettings, Settings

if TYPE_CHECKING:
    from e2ad.cli import Context

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def config() -> None:
    """The active provisioning configuration (scope, mappings, membership), applied live."""


def _load(file: Path) -> Settings:
    try:
        return load_settings(file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _kafka(context: Context, file_settings: Settings | None = None) -> KafkaSettings:
    """The broker: --config's when given, else the applied file's own kafka section."""
    if context.config_path is None and file_settings is not None:
        return file_settings.kafka
    return context.settings().kafka


async def _publish(settings: KafkaSettings, record: ActiveConfiguration) -> None:
    await kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.CONFIG, topics.encode(record), key=ACTIVE_KEY)
    finally:
        await producer.stop()


def _active(settings: KafkaSettings) -> ActiveConfiguration | None:
    return run_once(settings, lambda: read_active(settings))


@config.command("validate")
@click.argument("file", type=FILE)
def validate(file: Path) -> None:
    """Check FILE as every stage loads it (exit 0: valid, 1: every problem, each naming its field)."""
    settings = _load(file)
    job = settings.job
    click.echo(
        f"{file}: valid: scope {job.scope.mode} with {len(job.scope.filters)} filter(s),"
        f" {len(job.mappings)} mapping(s), configuration {job_digest(job)}"
    )


@config.command("apply")
@click.argument("file", type=FILE)
@click.pass_obj
def apply(context: Context, file: Path) -> None:
    """Make FILE's provisioning sections the active configuration; running stages follow it at once."""
    file_settings = _load(file)
    settings = _kafka(context, file_settings)
    job = file_settings.job
    active = _active(settings)
    if active is not None and active.state != "deleted" and active.digest == job_digest(job):
        click.echo(f"unchanged: version {active.version} ({active.state}) is this configuration already")
        return
    state: ConfigurationState = "disabled" if active is not None and active.state == "disabled" else "enabled"
    record = ActiveConfiguration(
        version=(active.version if active else 0) + 1,
        state=state,
        changed_at=dt.datetime.now(dt.UTC),
        changed_by=issued_by(),
        source=str(file.resolve()),
        job=job,
        graph_group_attributes=graph_group_attributes(job),
    )
    run_once(settings, lambda: _publish(settings, record))
    line = f"applied {file} as version {record.version} ({record.digest})"
    if state == "disabled":
        line += ": the configuration is disabled, `e2ad config enable` provisions it"
    click.echo(line)


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="The e2ad.config record as JSON.")
@click.pass_obj
def show(context: Context, as_json: bool) -> None:
    """The active configuration: version, state, who changed it, and its sections."""
    active = _active(_kafka(context))
    if active is None:
        raise click.ClickException(
            f"no configuration on {topics.CONFIG} yet: the processors publish theirs at their first start,"
            " or `e2ad config apply FILE`"
        )
    if as_json:
        click.echo(json.dumps(topics.jsonable(active), indent=2))
        return
    click.echo(f"version {active.version}: {active.state}")
    click.echo(f"changed {active.changed_at.isoformat(timespec='seconds')} by {active.changed_by}")
    if active.source:
        click.echo(f"from {active.source}")
    if active.job is None:
        click.echo("no configuration (deleted): `e2ad config apply FILE` starts again from a full round")
        return
    attributes = ", ".join(active.graph_group_attributes) or "-"
    click.echo(f"digest {active.digest}; Graph group attributes it reads: {attributes}")
    click.echo(yaml.safe_dump(active.job.model_dump(mode="json"), sort_keys=False, allow_unicode=True).rstrip())


def _change_state(context: Context, state: ConfigurationState, done: str) -> None:
    settings = _kafka(context)
    active = _active(settings)
    if active is None or active.job is None:
        raise click.ClickException("no active configuration: `e2ad config apply FILE` first")
    if active.state == state:
        click.echo(f"version {active.version} is {state} already")
        return
    record = active.model_copy(
        update={
            "version": active.version + 1,
            "state": state,
            "changed_at": dt.datetime.now(dt.UTC),
            "changed_by": issued_by(),
            "job": None if state == "deleted" else active.job,
            "graph_group_attributes": [] if state == "deleted" else active.graph_group_attributes,
        }
    )
    run_once(settings, lambda: _publish(settings, record))
    click.echo(f"version {record.version}: {done}")


@config.command("enable")
@click.pass_obj
def enable(context: Context) -> None:
    """Provision again: every group is evaluated and AD converges to it."""
    _change_state(context, "enabled", "enabled, AD converges to the configuration")


@config.command("disable")
@click.pass_obj
def disable(context: Context) -> None:
    """Stop writing to AD; the state keeps following Graph, so `enable` converges at once."""
    _change_state(context, "disabled", "disabled, nothing is written to AD until `e2ad config enable`")


@config.command("delete")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete(context: Context, yes: bool) -> None:
    """Stop provisioning and forget the processors' state; the groups in AD stay as they are."""
    if not yes:
        click.confirm(
            "Stop provisioning and forget the state (AD groups are kept; applying again runs a full round)?",
            abort=True,
        )
    _change_state(context, "deleted", "deleted: nothing is provisioned, the state is forgotten, AD groups stay")
