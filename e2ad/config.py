"""Load the configuration: a YAML file, then E2AD_… environment variables, then secret files.

Environment variables name a field by its path, sections joined by a double underscore:
E2AD_KAFKA__BOOTSTRAP_SERVERS, E2AD_AD__BIND_PASSWORD. A secret can also come from a file:
`graph.client_secret_file: /run/secrets/graph` or E2AD_GRAPH__CLIENT_SECRET_FILE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from processors.mapping import configuration_errors
from schemas.config import Settings
from writers import dn as dns

ENV_PREFIX = "E2AD_"
SECRET_FIELDS = {
    ("graph", "client_secret"),
    ("webhook", "client_state"),
    ("ad", "bind_password"),
}


class ConfigError(Exception):
    """The configuration is unusable; the message names every offending field."""


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    _overlay_environment(data, environ)
    _read_secret_files(data)
    source = f" in {path}" if path else ""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration{source}:\n" + describe_errors(exc)) from None
    # Expressions are checked now, not at the first group they would fail on.
    problems = configuration_errors(settings.mappings, settings.tokens) + _placement_errors(settings)
    if problems:
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(f"  {p}" for p in problems))
    return settings


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _placement_errors(settings: Settings) -> list[str]:
    """Containers the writer could never write in, named by their field."""
    provisioning, base_dn = settings.provisioning, settings.ad.base_dn
    problems = [
        f"provisioning.containers[{i}]: {container} is not below ad.base_dn {base_dn}"
        for i, container in enumerate(provisioning.containers)
        if base_dn and not dns.is_within(container, base_dn)
    ]
    target = provisioning.target_container
    if target and provisioning.containers and not any(dns.is_within(target, c) for c in provisioning.containers):
        problems.append(f"provisioning.target_container: {target} is in none of provisioning.containers")
    return problems


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ConfigError(f"configuration file {path} must hold a mapping of sections, not {kind}")
    return loaded


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name} sets {'.'.join(path)}, but {part} is not a section")
            node = child
        node[path[-1]] = value


def _read_secret_files(data: dict[str, Any]) -> None:
    for section, field in SECRET_FIELDS:
        node = data.get(section)
        if not isinstance(node, dict) or f"{field}_file" not in node:
            continue
        secret_path = Path(str(node.pop(f"{field}_file")))
        try:
            node[field] = secret_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{section}.{field}_file: cannot read {secret_path}: {exc.strerror}") from None
