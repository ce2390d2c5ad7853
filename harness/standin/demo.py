"""A small demo tenant for `e2ad up` without Graph credentials, and a trickle of changes.

Synced users come from the caller (their onPremisesObjectIdentifier is a real AD objectGUID), so
the groups e2ad writes into AD get real members; cloud-only users show that they are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.standin.tenant import Mutation, Tenant

log = logging.getLogger(__name__)

SECURITY_GROUPS = ("Finance", "Engineering", "Sales", "Helpdesk")
CLOUD_ONLY_USERS = ("Casey Cloud", "Robin Remote", "Alex Azure")
MAX_TRICKLE_GROUPS = 5  # groups the trickle creates at most, so the demo tenant stays small


@dataclass(frozen=True)
class SyncedUser:
    """A user synchronised from AD: its Entra id and its AD objectGUID."""

    id: str
    object_guid: str
    display_name: str
    user_principal_name: str | None = None


@dataclass
class DemoTenant:
    synced_users: list[str]
    cloud_users: list[str]
    groups: dict[str, str] = field(default_factory=dict)  # display name -> id


def seed_demo_tenant(tenant: Tenant, synced_users: Iterable[SyncedUser], *, seed: int = 7) -> DemoTenant:
    """Users, security groups with mixed members, a nested group, one mail-enabled and one AD-synced group."""
    rng = random.Random(seed)
    synced = []
    for user in synced_users:
        properties: dict[str, object] = {"onPremisesObjectIdentifier": user.object_guid, "onPremisesSyncEnabled": True}
        if user.user_principal_name:
            properties["userPrincipalName"] = user.user_principal_name
        synced.append(tenant.add_user(user.display_name, id=user.id, **properties).object_id)
    cloud = [tenant.add_user(name).object_id for name in CLOUD_ONLY_USERS]
    sample = DemoTenant(synced, cloud)
    for name in SECURITY_GROUPS:
        group_id = tenant.add_group(name, description=f"{name} team (sample)").object_id
        sample.groups[name] = group_id
        for member_id in rng.sample(synced, k=min(len(synced), 3)) + rng.sample(cloud, k=1):
            tenant.add_member(group_id, member_id)
    platform = tenant.add_group("Platform", description="Nested in Engineering (sample)").object_id
    sample.groups["Platform"] = platform
    tenant.add_member(sample.groups["Engineering"], platform)
    sample.groups["All Staff"] = tenant.add_group(
        "All Staff", mailEnabled=True, securityEnabled=False, mailNickname="allstaff", groupTypes=["Unified"]
    ).object_id
    sample.groups["Domain Admins (synced)"] = tenant.add_group(
        "Domain Admins (synced)", onPremisesSyncEnabled=True
    ).object_id
    return sample


async def trickle(
    tenant: Tenant, *, interval: float = 5.0, changes: int | None = None, seed: int | None = None
) -> list[Mutation]:
    """Make one small random change every interval seconds, `changes` times (None: until cancelled)."""
    rng = random.Random(seed)
    created: list[str] = []
    done: list[Mutation] = []
    while changes is None or len(done) < changes:
        await asyncio.sleep(interval)
        mutation = _random_change(tenant, rng, created)
        if mutation is not None:
            log.info("sample tenant: %s %s", mutation.kind, mutation.object_id)
            done.append(mutation)
    return done


def _random_change(tenant: Tenant, rng: random.Random, created: list[str]) -> Mutation | None:
    groups = [
        gid
        for gid, g in tenant.objects["groups"].items()
        if g.get("securityEnabled") and not g.get("mailEnabled") and not g.get("onPremisesSyncEnabled")
    ]
    users = list(tenant.objects["users"])
    if not groups or not users:
        return None
    group_id = rng.choice(groups)
    outsiders = [u for u in users if u not in tenant.members[group_id]]
    action = rng.choice(("add", "remove", "describe", "create", "delete"))
    if action == "add" and outsiders:
        return tenant.add_member(group_id, rng.choice(outsiders))
    if action == "remove" and tenant.members[group_id]:
        return tenant.remove_member(group_id, rng.choice(list(tenant.members[group_id])))
    if action == "create" and len(created) < MAX_TRICKLE_GROUPS:
        mutation = tenant.add_group(f"Project {rng.randint(100, 999)}", description="Created by the sample trickle")
        created.append(mutation.object_id)
        return mutation
    if action == "delete" and created:
        return tenant.soft_delete_group(created.pop(rng.randrange(len(created))))
    return tenant.update_group(group_id, description=f"Updated by the sample trickle ({rng.randint(1, 9999)})")
