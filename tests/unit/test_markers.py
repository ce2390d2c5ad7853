"""`pytest -m "not integration"` starts no broker and no DC: tests/conftest.py refuses a test that
would reach one without the integration mark, before any fixture runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
INTEGRATION_DIR = ROOT / "tests" / "integration"


def run_pytest(tmp_path: Path, test_source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a directory of its own whose conftest is the suite's, on one test module."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_probe.py").write_text(test_source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fixture", ["kafka_settings", "failover_kafka_settings", "ad_settings", "test_ou"])
def test_an_unmarked_test_reaching_a_service_fails_the_collection_and_starts_nothing(
    tmp_path: Path, fixture: str
) -> None:
    ran = tmp_path / "ran"
    result = run_pytest(
        tmp_path,
        f"from pathlib import Path\n\ndef test_probe({fixture}):\n    Path({str(ran)!r}).touch()\n",
        "-m",
        "not integration",
    )

    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "must be marked integration" in result.stderr and "test_probe" in result.stderr, result.stderr
    assert not ran.exists()


def test_a_marked_test_reaching_a_service_is_deselected_by_not_integration(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        "import pytest\n\n"
        "@pytest.mark.integration\ndef test_probe(kafka_settings, ad_admin):\n    raise AssertionError\n",
        "-m",
        "not integration",
    )

    assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout + result.stderr
    assert "1 deselected" in result.stdout, result.stdout


def test_not_integration_deselects_every_test_under_tests_integration() -> None:
    """Collected only: no fixture runs, so nothing starts."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "-m", "not integration",
         str(INTEGRATION_DIR)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout + result.stderr
    deselected = re.search(r"no tests collected \((\d+) deselected\)", result.stdout)
    assert deselected and int(deselected[1]) > 100, result.stdout  # every one of them, none selected
