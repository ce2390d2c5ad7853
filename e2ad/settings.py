"""The configuration as the command line loads it: runtime/config.py's layers, then every stage's checks.

The stages' checks live with the stages (the expression compiler in processors, DN rules in
writers); only the command line, which imports every stage anyway, puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from processors.mapping import settings_errors as mapping_errors
from processors.scoping import scope_errors
from runtime import config
from schemas.config import Settings
from writers.dn import placement_errors

STAGE_CHECKS: tuple[config.SettingsCheck, ...] = (scope_errors, mapping_errors, placement_errors)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings, refused with a ConfigError naming every bad field, mappings and containers included."""
    return config.load_settings(path, environ, checks=STAGE_CHECKS)
