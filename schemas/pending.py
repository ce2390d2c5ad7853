"""What writers tell each other about nested groups that are not in AD yet.

ad.pending (compacted, keyed by the parent's group id, partitioned like ad.desired): a parent
group waiting for nested groups to be created. ad.created (one partition, read by every
writer): a group a writer has just created, so the writer owning a waiting parent can finish it.
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.desired import DesiredGroup


class PendingGroup(BaseModel):
    """A parent group that was converged without some nested groups, because they were not in AD."""

    desired: DesiredGroup  # the parent's latest desired state, converged again once one appears
    missing: list[str]  # anchors of the nested groups not in AD yet


class CreatedGroup(BaseModel):
    """A group a writer has just created in AD."""

    group_id: str
    anchor: str
    dn: str
