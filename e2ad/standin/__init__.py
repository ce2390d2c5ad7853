"""A Microsoft Graph stand-in for tests and the demo: a fake tenant served like Graph v1.0 on loopback."""

from e2ad.standin.demo import DemoTenant, SyncedUser, seed_demo_tenant, trickle
from e2ad.standin.server import GraphStandin, SeenRequest, running_standin
from e2ad.standin.subscriptions import Delivery
from e2ad.standin.tenant import Mutation, Tenant, UnknownObject

__all__ = [
    "Delivery",
    "DemoTenant",
    "GraphStandin",
    "Mutation",
    "SeenRequest",
    "SyncedUser",
    "Tenant",
    "UnknownObject",
    "running_standin",
    "seed_demo_tenant",
    "trickle",
]
