"""The active configuration in the processors: the core it compiles to, and what it asks of Graph.

A configuration on e2ad.config (schemas/active.py) is the file's provisioning sections, checked
by whoever published it; the processors compile it again (the scope, the mappings) and refuse one
they cannot use instead of guessing: the one in effect stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from typing import Any

from processors.mapping import GroupMapper, mapping_sources
from processors.provisioning import ProvisioningState
from processors.scoping import Scope, filter_attributes
from schemas.active import ActiveConfiguration
from schemas.config import ProvisioningJob, Settings

State = MutableMapping[str, Any]


def graph_group_attributes(job: ProvisioningJob) -> list[str]:
    """Every Graph group attribute the scope filters and the mappings read, for the delta $select."""
    return sorted({*filter_attributes(job.scope), *mapping_sources(job.mappings)})


def first_configuration(job: ProvisioningJob, *, changed_by: str, source: str | None) -> ActiveConfiguration:
    """Version 1: a file's configuration, published by the processors when e2ad.config is empty."""
    return ActiveConfiguration(
        version=1,
        state="enabled",
        changed_at=dt.datetime.now(dt.UTC),
        changed_by=changed_by,
        source=source,
        job=job,
        graph_group_attributes=graph_group_attributes(job),
    )


def compile_core(
    settings: Settings,
    active: ActiveConfiguration,
    *,
    users: State,
    groups: State,
    parents: State,
    replaying: bool = False,
) -> ProvisioningState:
    """The provisioning core for an enabled or disabled configuration; ValueError if it cannot be used.

    Paused (folding, publishing nothing) while the configuration is not enabled, and while a
    replay's records are folded (processors/state.py ProcessorStore.replaying).
    """
    if active.job is None:
        raise ValueError(f"version {active.version} is {active.state} and carries no configuration")
    effective = settings.with_job(active.job)
    mapper = GroupMapper(effective.mappings, effective.tokens, effective.provisioning.target_container)
    return ProvisioningState(
        effective.provisioning,
        mapper,
        Scope(effective.scope),
        users=users,
        groups=groups,
        parents=parents,
        paused=active.state != "enabled" or replaying,
        on_premises_users=effective.membership.on_premises_users,
    )


def evaluation_marker(active: ActiveConfiguration) -> dict[str, Any]:
    """What processors.state records of the configuration the groups were evaluated with."""
    return {"version": active.version, "digest": active.digest, "state": active.state}


def needs_evaluation(active: ActiveConfiguration, evaluated: dict[str, Any] | None) -> bool:
    """Whether every group must be evaluated again: the scope, mappings or state differ from the last evaluation."""
    if evaluated is None:
        return True
    return (evaluated.get("digest"), evaluated.get("state")) != (active.digest, active.state)
