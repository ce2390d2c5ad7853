"""What the benchmarks that run the stages share: a fresh embedded broker, an OU of their own on the
machine's shared DC, the settings `e2ad up` gives its simulated tenant, and ingest's readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException

from harness.embedded import SIMULATED_GRAPH_TIMING
from harness.services import LocalServices, free_port
from harness.standin import GraphStandin
from runtime import kafka
from runtime.logs import configure_logging
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from writers.connection import close, connect
from writers.errors import DirectoryUnavailable

TREE_DELETE = ("1.2.840.113556.1.4.805", True, None)
PAGED_RESULTS = "1.2.840.113556.1.4.319"
PAGE_SIZE = 500  # below Samba's MaxPageSize of 1000
READY_TIMEOUT_SECONDS = 60
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PARTITIONS = 4


class BenchError(Exception):
    """The benchmark could not measure correct work: a stage died, AD rejected a write, a result is wrong."""


def run_bench(bench: Coroutine[Any, Any, None]) -> None:
    """Run a benchmark that starts the stages: its errors one line each and exit 1, never a traceback."""
    configure_logging("WARNING", "bench")
    # aiokafka logs each refused connection at ERROR while the fresh broker starts; start_kafka waits for it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(bench)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except DirectoryUnavailable as exc:
        # Other engineers' fault tests restart the shared DC now and then.
        print(f"error: lost the DC ({exc}); rerun", file=sys.stderr)
        sys.exit(1)


def check(result: dict[str, Any], what: str) -> None:
    if result["result"] != 0:
        raise BenchError(f"{what}: {result['result']} {result['description']} {result.get('message') or ''}")


def search_all(conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str]) -> Iterator[dict]:
    """One-level paged search (a sub-OU holds more entries than one page)."""
    cookie: bytes | None = None
    while True:
        _, result, response, _ = conn.search(
            base, search_filter, ldap3.LEVEL, attributes=attributes, paged_size=PAGE_SIZE, paged_cookie=cookie
        )
        check(result, f"search below {base}")
        yield from (entry for entry in response if entry.get("type") == "searchResEntry")
        cookie = result.get("controls", {}).get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
        if not cookie:
            return


@contextlib.asynccontextmanager
async def bench_ou(ad: AdSettings, prefix: str) -> AsyncIterator[str]:
    """An OU of this run's own below the base DN, tree-deleted afterwards."""
    ou = f"OU={prefix}-{uuid.uuid4().hex[:8]},{ad.base_dn}"
    await asyncio.to_thread(ldap_step, ad, lambda c: c.add(ou, "organizationalUnit"), f"create {ou}")
    try:
        yield ou
    finally:
        try:
            await asyncio.to_thread(ldap_step, ad, lambda c: c.delete(ou, controls=[TREE_DELETE]), f"delete {ou}")
        except (BenchError, DirectoryUnavailable, LDAPException) as exc:  # reported: an earlier error matters more
            print(f"warning: {exc}; remove {ou} with a tree delete", file=sys.stderr)


def ldap_step(ad: AdSettings, step: Callable[[Any], tuple[Any, dict[str, Any], Any, Any]], what: str) -> None:
    """One LDAP request on a connection of its own: the shared DC may have been restarted since the last."""
    connection = connect(ad)
    try:
        _, result, _, _ = step(connection)
        check(result, what)
    finally:
        close(connection)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextlib.asynccontextmanager
async def embedded_broker(state_dir: Path) -> AsyncIterator[tuple[KafkaSettings, int]]:
    """A fresh noida-db broker with e2ad's topics; its settings and its pid."""
    services = LocalServices(state_dir)
    bootstrap = await services.start_kafka()
    try:
        settings = KafkaSettings(bootstrap_servers=bootstrap, partitions=PARTITIONS)
        await kafka.ensure_topics(settings)
        yield settings, json.loads(services.kafka_state.read_text())["pid"]
    finally:
        services.stop_kafka()


def simulated_settings(
    kafka_settings: KafkaSettings, standin: GraphStandin, ad: AdSettings, ou: str, state_dir: Path
) -> Settings:
    """The stages' settings as `e2ad up` runs them on a simulated tenant: change notifications to the
    webhook, its Graph timing, the groups in `ou`."""
    port = free_port()
    return Settings(
        kafka=kafka_settings,
        graph=standin.graph_settings(**SIMULATED_GRAPH_TIMING),
        webhook=WebhookSettings(
            listen_port=port, public_url=f"http://127.0.0.1:{port}", client_state=secrets.token_urlsafe(32)
        ),
        ad=ad,
        provisioning=ProvisioningSettings(target_container=ou),
        state_dir=state_dir,
        log_level="WARNING",
    )


async def wait_for_subscriptions(standin: GraphStandin) -> None:
    """Ingest has created its groups and users subscriptions: changes are notified from here on."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while len(standin.subscriptions.subscriptions) < 2:
        if time.monotonic() > deadline:
            raise BenchError(f"ingest did not subscribe within {READY_TIMEOUT_SECONDS} s")
        await asyncio.sleep(0.1)
