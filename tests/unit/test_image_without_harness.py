"""The production image leaves harness/ out: the stages still run, and the development commands say why they cannot."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from e2ad.cli import main

# Importing any of these makes harness/ unimportable in this process, as in the image.
HARNESS_MODULES = ("harness", "harness.services", "harness.embedded", "harness.pipeline", "harness.standin")


@pytest.fixture
def without_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HARNESS_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("args", [["services", "status"], ["up"]])
def test_development_commands_say_the_harness_is_missing(without_harness: None, args: list[str]) -> None:
    result = CliRunner().invoke(main, args, env={"E2AD_CONFIG": ""})
    assert result.exit_code == 1
    assert "development harness" in result.output
    assert "e2ad ingest, process, write" in result.output


def test_the_stages_import_nothing_of_the_harness() -> None:
    """Loading every stage's entry point in a fresh interpreter pulls in no harness module."""
    code = (
        "import sys, ingest.service, processors.app, writers.service, writers.sweep, e2ad.cli; "
        "print(sorted(m for m in sys.modules if m == 'harness' or m.startswith('harness.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
