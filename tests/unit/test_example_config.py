"""e2ad.example.yaml, the file operators start from: it loads with the real loader, gives every
secret as a file, and names every configuration field (set, or commented out as an alternative)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from e2ad.settings import load_settings
from runtime.config import SECRET_FIELDS
from schemas.config import Settings
from tests.example_config import EXAMPLE, example_secrets

# Free-form maps: their keys are AD attributes and token names, not fields.
MAPS = {"mappings", "tokens"}
_SECTION = re.compile(r"^([a-z_]+):")
_SETTING = re.compile(r"^  (?:# )?([a-z][a-z0-9_]*):(?:\s|$)")


def documented_settings(text: str) -> set[tuple[str, str]]:
    """(section, key) of every setting line, active or commented out, below a top-level section."""
    found, section = set(), None
    for line in text.splitlines():
        if match := _SECTION.match(line):
            section = match.group(1)
            found.add(("", section))
        elif section not in MAPS and (match := _SETTING.match(line)) and _is_setting(line.strip().removeprefix("# ")):
            found.add((section or "", match.group(1)))
    return found


def _is_setting(text: str) -> bool:
    """A commented-out setting is YAML of its own; prose that merely starts like one is not."""
    try:
        return isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return False


def configuration_fields() -> set[tuple[str, str]]:
    fields = set()
    for name, field in Settings.model_fields.items():
        fields.add(("", name))
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            fields |= {(name, sub) for sub in field.annotation.model_fields}
    return fields


def test_the_example_loads_with_the_real_loader(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE, environ=example_secrets(tmp_path))
    assert settings.graph.configured
    assert settings.webhook.public_url is not None
    assert settings.graph.client_secret is not None
    assert settings.graph.client_secret.get_secret_value() == "graph-client_secret-from-file"
    assert settings.ad.bind_password is not None
    assert settings.ad.bind_password.get_secret_value() == "ad-bind_password-from-file"
    assert settings.ad.url.startswith("ldaps://") and not settings.ad.insecure
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-sasl_password-from-file"


def test_the_example_writes_no_secret_inline() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    for section, field in SECRET_FIELDS:
        assert field not in example.get(section, {}), f"{section}.{field} belongs in {field}_file"
        assert f"{field}_file" in example.get(section, {})


def test_the_example_names_every_configuration_field() -> None:
    documented = documented_settings(EXAMPLE.read_text())
    fields = configuration_fields()
    secret_files = {(section, f"{field}_file") for section, field in SECRET_FIELDS}
    missing = {
        (section, name)
        for section, name in fields
        if (section, name) not in documented and (section, f"{name}_file") not in documented
    }
    assert missing == set()
    unknown = documented - fields - secret_files
    assert unknown == set(), "a setting line names no configuration field (a typo?)"


@pytest.mark.parametrize(
    ("line", "documented"),
    [
        ("  # page_size: 999", True),
        ("  page_size: 999", True),
        ("  # Quarantine: when a writer stops", False),  # prose, capitalised
        ("  # simple: bind as bind_dn; kerberos: SASL", False),  # prose that is no YAML mapping
    ],
)
def test_a_setting_line_is_told_from_prose(line: str, documented: bool) -> None:
    assert bool(documented_settings("graph:\n" + line) - {("", "graph")}) is documented
