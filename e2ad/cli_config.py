"""`e2ad config`: the provisioning configuration the running stages follow, on e2ad.config.

validate checks a file as every stage's loader does; apply publishes its provisioning sections
(scope, mappings, membership, tokens, provisioning) as the next version; enable, disable and
delete change the state of the active one. The stages pick every change up while they run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml
from rich.console import Console

from e2ad.control import issued_by, run_once
from e2ad.plan import ConfigurationPlan, configuration_plan, render, summarise
from e2ad.settings import load_settings
from processors.configuration import compile_core, graph_group_attributes
from processors.deletion_guard import GuardSettings
from processors.state import ProcessorStore
from runtime import kafka
from runtime.active_config import read_active
from runtime.config import ConfigError
from schemas import topics
from schemas.active import ACTIVE_KEY, ActiveConfiguration, ConfigurationState, job_digest
from schemas.config import JOB_SECTIONS, KafkaSettings, ProvisioningJob, Settings
from writers.directory import Directory
from writers.errors import DirectoryUnavailable, ObjectError

if TYPE_CHECKING:
    from e2ad.cli import Context

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def config() -> None:
    """The active provisioning configuration (scope, mappings, membership), applied live."""


def _load(file: Path) -> Settings:
    """FILE as the stages load it, except that its provisioning sections are taken as written.

    An E2AD_SCOPE__…, E2AD_MAPPINGS or E2AD_PROVISIONING__… variable in the operator's shell (a
    stage's container sets some) would otherwise change what is validated, planned or applied
    without FILE saying so: such variables are left out, and named.
    """
    prefixes = tuple(f"E2AD_{section.upper()}" for section in JOB_SECTIONS)
    ignored = sorted(name for name in os.environ if name.startswith(prefixes) and _names_section(name, prefixes))
    if ignored:
        click.echo(f"ignored {', '.join(ignored)}: {file}'s provisioning sections are taken as written", err=True)
    environ = {name: value for name, value in os.environ.items() if name not in ignored}
    try:
        return load_settings(file, environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _names_section(name: str, prefixes: tuple[str, ...]) -> bool:
    """E2AD_MAPPINGS or E2AD_SCOPE__MODE, not a longer name that merely starts the same."""
    return any(name == prefix or name.startswith(prefix + "__") for prefix in prefixes)


def _reach(context: Context, file_settings: Settings | None = None) -> Settings:
    """How to reach Kafka and AD (and the deletion guard's settings): --config's when given, else FILE's own."""
    if context.config_path is None and file_settings is not None:
        return file_settings
    return context.settings()


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
    settings = _reach(context, file_settings).kafka
    job = file_settings.job
    active = _active(settings)
    if active is not None and active.state != "deleted" and active.digest == job_digest(job):
        click.echo(f"unchanged: version {active.version} ({active.state}) is this configuration already")
        return
    record = _next_configuration(active, file, job)
    run_once(settings, lambda: _publish(settings, record))
    line = f"applied {file} as version {record.version} ({record.digest})"
    if record.state == "disabled":
        line += ": the configuration is disabled, `e2ad config enable` provisions it"
    click.echo(line)


def _next_configuration(active: ActiveConfiguration | None, file: Path, job: ProvisioningJob) -> ActiveConfiguration:
    """The record `apply` publishes for FILE: the next version, disabled when the active one is."""
    state: ConfigurationState = "disabled" if active is not None and active.state == "disabled" else "enabled"
    return ActiveConfiguration(
        version=(active.version if active else 0) + 1,
        state=state,
        changed_at=dt.datetime.now(dt.UTC),
        changed_by=issued_by(),
        source=str(file.resolve()),
        job=job,
        graph_group_attributes=graph_group_attributes(job),
    )


@config.command("plan")
@click.argument("file", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="The plan as one JSON object (docs/operations.md).")
@click.option(
    "--max-deletes", type=click.IntRange(min=0), default=None, help="More deletes than this are an error (exit 1)."
)
@click.pass_obj
def plan(context: Context, file: Path, as_json: bool, max_deletes: int | None) -> None:
    """What applying FILE would do in AD, from the processors' state and one AD read; changes nothing.

    Exit 0: no change, 2: changes, 1: errors (a group that would fail, more deletes than --max-deletes).
    """
    file_settings = _load(file)
    settings = _reach(context, file_settings)
    active, latest = run_once(settings.kafka, lambda: _pipeline_state(settings.kafka))
    if active is None or active.job is None:
        why = " (the active one is deleted: the state is forgotten, an apply runs a full delta round)" if active else ""
        raise click.ClickException(f"no configuration to plan against on {topics.CONFIG}{why}")
    store = ProcessorStore()
    store.load(latest)
    proposed = _next_configuration(active, file, file_settings.job)
    try:
        # Copies: the plan must not touch the state it reads, even in memory.
        core = compile_core(
            settings, proposed, users=dict(store.users), groups=dict(store.groups), parents=dict(store.parents)
        )
        directory = Directory(settings.ad)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    effective = settings.with_job(proposed.job).provisioning  # type: ignore[arg-type]  # FILE's job is set
    try:
        directory.open()
        groups, unchanged = configuration_plan(
            core,
            store.guard,
            GuardSettings(settings.deletes.threshold, settings.deletes.window_seconds),
            directory,
            default_container=effective.target_container,
            containers=effective.write_containers,
            now=dt.datetime.now(dt.UTC),
        )
    except (DirectoryUnavailable, ObjectError) as exc:
        raise click.ClickException(f"AD: {exc}") from None
    finally:
        directory.close()
    result = ConfigurationPlan(
        file=str(file),
        digest=proposed.digest,
        active_version=active.version,
        active_digest=active.digest,
        active_state=active.state,
        changes=bool(groups),
        summary=summarise(groups, unchanged),
        groups=groups,
    )
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        render(result, Console(highlight=False, markup=False))
    if result.summary.failed:
        raise click.ClickException(f"{result.summary.failed} group(s) would fail")
    if max_deletes is not None and result.summary.deleted > max_deletes:
        raise click.ClickException(f"{result.summary.deleted} deletes, more than --max-deletes {max_deletes}")
    if result.changes:
        click.get_current_context().exit(2)


async def _pipeline_state(settings: KafkaSettings) -> tuple[ActiveConfiguration | None, dict[bytes, bytes]]:
    """The active configuration and processors.state read to its end (never written back)."""
    return await read_active(settings), await kafka.read_latest(settings, topics.PROCESSORS_STATE)


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="The e2ad.config record as JSON.")
@click.pass_obj
def show(context: Context, as_json: bool) -> None:
    """The active configuration: version, state, who changed it, and its sections."""
    active = _active(_reach(context).kafka)
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
    settings = _reach(context).kafka
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
