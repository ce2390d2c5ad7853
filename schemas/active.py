"""The active provisioning configuration, as e2ad.config carries it (one compacted record, key "active").

`e2ad config apply | enable | disable | delete` write it; every stage follows it: the processors
evaluate groups with it, ingest adds the Graph attributes it references to the delta $select, the
writers take their containers from it and pause while it is disabled or deleted. The processors
publish their file's configuration as version 1 when the topic is empty (the first start).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.config import ProvisioningJob

ACTIVE_KEY = b"active"
# enabled: provisioned; disabled: state follows Graph, nothing is written to AD; deleted: not
# provisioned, the processors' state forgotten (AD groups stay).
ConfigurationState = Literal["enabled", "disabled", "deleted"]


class ActiveConfiguration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)  # one more at every apply, enable, disable or delete
    state: ConfigurationState
    changed_at: dt.datetime
    changed_by: str  # user@host of the command, or the stage that published its file's configuration
    source: str | None = None  # the file applied
    job: ProvisioningJob | None = None  # None once deleted
    # What the delta $select must add to ingest's own attributes for the scope and the mappings
    # (directory extensions among them): computed by whoever publishes, which can parse expressions.
    graph_group_attributes: list[str] = Field(default_factory=list)

    @property
    def digest(self) -> str | None:
        return job_digest(self.job) if self.job is not None else None

    @property
    def provisioning(self) -> bool:
        """Whether groups are written to AD under this configuration."""
        return self.state == "enabled"


def job_digest(job: ProvisioningJob) -> str:
    """A short fingerprint of a provisioning configuration, to tell two apart (secrets: none in it)."""
    return hashlib.sha256(job.model_dump_json().encode()).hexdigest()[:16]
