"""Reading the active provisioning configuration from e2ad.config (schemas/active.py), for every stage."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from runtime import kafka
from runtime.errors import describe_errors
from schemas import topics
from schemas.active import ACTIVE_KEY, ActiveConfiguration, job_digest
from schemas.config import KafkaSettings, ProvisioningJob

log = logging.getLogger(__name__)


class ActiveConfigurationError(ValueError):
    """e2ad.config holds a record this version cannot read; the stage must not guess a configuration."""


def parse_active(value: bytes) -> ActiveConfiguration:
    try:
        return topics.decode(ActiveConfiguration, value)
    except ValidationError as exc:
        raise ActiveConfigurationError(
            f"{topics.CONFIG} holds an unreadable active configuration:\n{describe_errors(exc)}"
        ) from None


async def read_active(settings: KafkaSettings) -> ActiveConfiguration | None:
    """The active configuration, or None when none was ever published."""
    value = (await kafka.read_latest(settings, topics.CONFIG)).get(ACTIVE_KEY)
    return None if value is None else parse_active(value)


def file_differs(stage: str, file_job: ProvisioningJob, active: ActiveConfiguration | None) -> str | None:
    """What a stage says at start when its file's provisioning sections are not the active ones (None: same)."""
    if active is None or active.job is None or active.digest == job_digest(file_job):
        return None
    return (
        f"{stage}: the provisioning sections of this configuration file (scope, mappings, membership, tokens,"
        f" provisioning) differ from the active configuration, version {active.version} applied"
        f" {active.changed_at.isoformat(timespec='seconds')} by {active.changed_by}: the active one is used."
        " `e2ad config show` prints it; `e2ad config apply FILE` makes a file's the active one"
    )
