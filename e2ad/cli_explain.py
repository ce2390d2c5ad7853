"""`e2ad explain GROUP_ID`: why a group is not in AD, or not as expected, and the command that fixes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

from e2ad.cli_quarantine import read_statuses
from e2ad.control import run_once
from e2ad.explain import Facts, diagnose, render
from processors.configuration import compile_core
from processors.deletion_guard import DELETE_KEY_PREFIX, GUARD_KEY
from processors.state import ProcessorStore
from runtime import kafka
from runtime.active_config import read_active
from schemas import topics
from schemas.config import KafkaSettings, Settings
from schemas.deletes import GuardRecord, HeldDelete
from schemas.pending import PendingGroup
from schemas.results import ProvisioningResult

if TYPE_CHECKING:
    from e2ad.cli import Context


@click.command()
@click.argument("group_id")
@click.pass_obj
def explain(context: Context, group_id: str) -> None:
    """Why GROUP_ID is not in AD or not as expected, from the latest state and provisioning log; what fixes it."""
    settings = context.settings()
    try:
        facts = run_once(settings.kafka, lambda: read_facts(settings, group_id.strip()))
    except ValueError as exc:  # the active configuration does not compile: the processors refuse it too
        raise click.ClickException(str(exc)) from None
    render(diagnose(facts), facts.group_id, Console(highlight=False, markup=False))


async def read_facts(settings: Settings, group_id: str) -> Facts:
    """Everything the stages recorded about the group; processors.state is read, never written."""
    store = ProcessorStore()
    store.load(await kafka.read_latest(settings.kafka, topics.PROCESSORS_STATE))
    active = await read_active(settings.kafka)
    core = None
    if active is not None and active.job is not None and group_id in store.groups:
        # Copies: explaining must not touch the state it reads, even in memory.
        core = compile_core(
            settings, active, users=dict(store.users), groups=dict(store.groups), parents=dict(store.parents)
        )
    held = store.guard.get(f"{DELETE_KEY_PREFIX}{group_id}")
    guard = store.guard.get(GUARD_KEY)
    result = await _latest(settings.kafka, topics.AD_RESULTS, group_id)
    pending = await _latest(settings.kafka, topics.AD_PENDING, group_id)
    return Facts(
        group_id=group_id,
        active=active,
        group=store.groups.get(group_id),
        core=core,
        held=HeldDelete.model_validate(held) if held else None,
        trip=GuardRecord.model_validate(guard).trip if guard else None,
        result=topics.decode(ProvisioningResult, result) if result else None,
        pending=topics.decode(PendingGroup, pending) if pending else None,
        writers=await read_statuses(settings.kafka),
    )


async def _latest(settings: KafkaSettings, topic: str, group_id: str) -> bytes | None:
    return (await kafka.read_latest(settings, topic)).get(topics.key(group_id))
