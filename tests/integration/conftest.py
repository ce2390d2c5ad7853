"""Fixtures of the writer's integration tests that look at what goes over the LDAP connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.config import AdSettings
from tests.integration.wiretap import Wiretap
from writers.directory import Directory


@pytest.fixture
def wiretap() -> Wiretap:
    return Wiretap()


@pytest.fixture
def directory(ad_settings: AdSettings, wiretap: Wiretap) -> Iterator[Directory]:
    """The writer's Directory on the real DC, every request recorded by `wiretap`."""
    directory = Directory(ad_settings, connector=wiretap.connect)
    yield directory
    directory.close()
