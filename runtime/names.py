"""How a running e2ad process names itself on e2ad.status and in the provisioning log."""

from __future__ import annotations

import os
import socket


def instance_name(role: str | None = None) -> str:
    """`host:pid`, or `role@host:pid`: unique while the process runs, and says where to look."""
    where = f"{socket.gethostname()}:{os.getpid()}"
    return f"{role}@{where}" if role else where
