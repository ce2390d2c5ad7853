"""Fixtures of the writer's integration tests: a writer on the test OU, and what goes over the LDAP connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from tests.integration.helpers import Harness
from tests.integration.wiretap import Wiretap
from writers.directory import Directory


@pytest_asyncio.fixture
async def writer(kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str) -> AsyncIterator[Harness]:
    """A writer whose file's container is the test OU (tests may publish configurations naming OUs below it)."""
    settings = Settings(
        kafka=kafka_settings, ad=ad_settings, provisioning=ProvisioningSettings(target_container=test_ou)
    )
    async with Harness(settings) as harness:
        yield harness


@pytest.fixture
def wiretap() -> Wiretap:
    return Wiretap()


@pytest.fixture
def directory(ad_settings: AdSettings, wiretap: Wiretap) -> Iterator[Directory]:
    """The writer's Directory on the real DC, every request recorded by `wiretap`."""
    directory = Directory(ad_settings, connector=wiretap.connect)
    yield directory
    directory.close()
