"""How the processors read a Restart sync: `--force-deletes` counts only while it is fresh."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from processors.app import forced
from schemas.control import ControlCommand

NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def restart(force: bool, seconds_ago: float) -> ControlCommand:
    return ControlCommand(command="restart", force_deletes=force, issued_at=NOW - dt.timedelta(seconds=seconds_ago))


def test_a_fresh_forced_restart_forces_the_deletes() -> None:
    assert forced(restart(True, 299), NOW, 300) is True


def test_a_plain_restart_never_forces() -> None:
    assert forced(restart(False, 0), NOW, 300) is False


def test_a_forced_restart_read_a_window_late_acts_as_a_plain_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="processors.app"):
        assert forced(restart(True, 301), NOW, 300) is False
    assert "applied without forcing them" in caplog.text
