"""One provisioning-log record per writer decision, on ad.results (keyed by group id).

Modelled on Entra's provisioningObjectSummary: action, status, steps, modified properties.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from schemas.desired import AttributeValue

# StagedDelete: the processors' deletion guard held the group's delete for an operator.
Action = Literal["create", "update", "delete", "skip", "StagedDelete"]
Status = Literal["success", "failure", "skipped", "warning"]


class ProvisioningStep(BaseModel):
    name: Literal["import", "scoping", "matching", "processing", "referenceResolution", "export"]
    status: Status
    description: str


class ModifiedAttribute(BaseModel):
    name: str
    old: AttributeValue | list[str] = None
    new: AttributeValue | list[str] = None


class ProvisioningResult(BaseModel):
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    group_id: str
    anchor: str
    dn: str | None = None
    action: Action
    status: Status
    steps: list[ProvisioningStep] = Field(default_factory=list)
    modified: list[ModifiedAttribute] = Field(default_factory=list)
    members_added: int = 0
    members_removed: int = 0
    warnings: list[str] = Field(default_factory=list)
    error_code: int | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    writer: str | None = None  # which writer process decided
    source_changed_at: dt.datetime | None = None
