"""e2ad.example.yaml, the file operators start from: it loads with the real loader, gives every
secret as a file, and names every configuration field (set, or commented out as an alternative)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from e2ad.settings import load_settings
from runtime.config import SECRET_FIELDS, field_paths, secret_file_path
from tests.example_config import EXAMPLE, example_secrets

# Free-form maps: their keys are AD attributes and token names, not fields.
MAPS = {"mappings", "tokens"}
# A setting line, active or commented out, at any depth: its indentation (before and after a `# `) and key.
_LINE = re.compile(r"^( *)(?:# ( *))?([a-z][a-z0-9_]*):(?:\s|$)")


def documented_settings(text: str) -> set[str]:
    """The dotted path of every setting line, active or commented out, nested by its indentation.

    Top-level settings are active lines; below them, commented-out ones count too.
    """
    found: set[str] = set()
    sections: list[str] = []  # the keys enclosing the current line, by depth
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        before, after, key = match.groups()
        commented = after is not None
        depth = (len(before) + len(after or "")) // 2
        if (commented and depth == 0) or depth > len(sections):
            continue  # a top-level comment, or deeper than any section: prose
        if (sections[:1] and sections[0] in MAPS and depth > 0) or not _is_setting(line.strip().removeprefix("# ")):
            continue
        del sections[depth:]
        sections.append(key)
        found.add(".".join(sections))
    return found


def _is_setting(text: str) -> bool:
    """A commented-out setting is YAML of its own; prose that merely starts like one is not."""
    try:
        return isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return False


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
    email = settings.notifications.email
    assert email is not None and email.security == "starttls" and email.port == 587
    assert email.password is not None
    assert email.password.get_secret_value() == "notifications-email-password-from-file"


def test_the_example_writes_no_secret_inline() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    for *sections, field in SECRET_FIELDS:
        node = example
        for section in sections:
            node = node.get(section) or {}
        assert field not in node, f"{'.'.join((*sections, field))} belongs in {field}_file"
        assert f"{field}_file" in node


def test_the_example_names_every_configuration_field() -> None:
    documented = documented_settings(EXAMPLE.read_text())
    fields = set(field_paths())
    secret_files = {secret_file_path(path): ".".join(path) for path in SECRET_FIELDS}
    missing = fields - documented - {secret_files[file] for file in documented & secret_files.keys()}
    assert missing == set()
    unknown = documented - fields - secret_files.keys()
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
    assert bool(documented_settings("graph:\n" + line) - {"graph"}) is documented


def test_settings_nest_by_indentation() -> None:
    text = "notifications:\n  email:\n    smtp_host: h\n    # smtp_port: 587\n  #   deeper: 1\nlog_level: INFO\n"
    assert documented_settings(text) == {
        "notifications",
        "notifications.email",
        "notifications.email.smtp_host",
        "notifications.email.smtp_port",
        "notifications.email.deeper",
        "log_level",
    }
