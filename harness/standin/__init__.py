"""A Microsoft Graph stand-in for tests and the demo: a fake tenant served like Graph v1.0 on loopback."""

from harness.standin.demo import DemoTenant, SyncedUser, seed_demo_tenant, trickle
from harness.standin.server import GraphStandin, SeenRequest, running_standin
from harness.standin.subscriptions import Delivery
from harness.standin.tenant import Mutation, Tenant, UnknownObject

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
