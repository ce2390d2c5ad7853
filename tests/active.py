"""Active configurations (schemas/active.py) as `e2ad config apply | enable | disable | delete` publish them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from schemas.active import ActiveConfiguration, ConfigurationState
from schemas.config import ProvisioningJob, ProvisioningSettings

# A directory extension as Cloud Sync's tutorial creates it (entra-provisioning.md §1.3).
WRITEBACK_ENABLED = "extension_0123456789abcdef0123456789abcdef_WritebackEnabled"


def active_configuration(
    version: int = 1,
    state: ConfigurationState = "enabled",
    *,
    containers: Sequence[str] = (),
    target_container: str | None = None,
    graph_group_attributes: Sequence[str] = (),
) -> ActiveConfiguration:
    provisioning = ProvisioningSettings(target_container=target_container, containers=list(containers))
    return ActiveConfiguration(
        version=version,
        state=state,
        changed_at=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=version),
        changed_by="operator@host",
        source="e2ad.yaml",
        job=None if state == "deleted" else ProvisioningJob(provisioning=provisioning),
        graph_group_attributes=list(graph_group_attributes),
    )
