"""Load the configuration: a YAML file, then E2AD_… environment variables, then secret files.

Environment variables name a field by its path, sections joined by a double underscore:
E2AD_KAFKA__BOOTSTRAP_SERVERS, E2AD_AD__BIND_PASSWORD. A secret can also come from a file:
`graph.client_secret_file: /run/secrets/graph` or E2AD_GRAPH__CLIENT_SECRET_FILE.

The environment layer is pydantic-settings' EnvSettingsSource. The secret-file layer is ours:
pydantic-settings' secret sources read a directory of files named after the fields, and cannot
express a path per field (`<name>_file`), which is what compose.yaml and operators use.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import EnvSettingsSource, SettingsError

from runtime import kafka, mail
from runtime.errors import describe_errors
from schemas.config import Settings

ENV_PREFIX = "E2AD_"
ENV_DELIMITER = "__"
# E2AD_… variables that are not settings: the file to load, and the namespaces of the local DC's
# script (harness/samba_dc.sh) and of the test suite (tests/conftest.py).
CONFIG_VARIABLE = "E2AD_CONFIG"
NOT_SETTINGS_PREFIXES = ("E2AD_DC_", "E2AD_TEST_")
# Each secret's path from the top of the file; `<name>_file` beside it names a file holding it.
SECRET_FIELDS: frozenset[tuple[str, ...]] = frozenset(
    {
        ("graph", "client_secret"),
        ("webhook", "client_state"),
        ("ad", "bind_password"),
        ("kafka", "sasl_password"),
        ("notifications", "email", "password"),
    }
)


# A stage's own check of loaded settings (its mappings, its containers): each problem names its field.
SettingsCheck = Callable[[Settings], list[str]]


class ConfigError(Exception):
    """The configuration is unusable; the message names every offending field."""


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None, *, checks: Sequence[SettingsCheck] = ()
) -> Settings:
    """The settings of the file and the environment, checked by the model and by `checks`.

    The stages' checks are passed in by the command line (e2ad/settings.py), so that this module,
    which every stage imports, imports none of them.
    """
    environ = os.environ if environ is None else environ
    unknown = _unknown_variables(environ)
    if unknown:
        raise ConfigError("invalid configuration in the environment:\n" + "\n".join(f"  {p}" for p in unknown))
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    _merge(data, _environment_layer(environ))
    _read_secret_files(data)
    source = f" in {path}" if path else ""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        message = describe_errors(exc, hint=_did_you_mean_field)
        raise ConfigError(f"invalid configuration{source}:\n{message}") from None
    # Expressions and containers are checked now, not at the first group they would fail on; the
    # Kafka CA and client certificate, and the SMTP server's CA, now, not when first connecting.
    problems = [problem for check in checks for problem in check(settings)]
    try:
        kafka.security_options(settings.kafka)
    except ValueError as exc:
        problems.append(str(exc))
    problems += mail.check_ca_file(settings.notifications.email)
    if problems:
        raise ConfigError(f"invalid configuration{source}:\n" + "\n".join(f"  {p}" for p in problems))
    return settings


def default_state_dir() -> Path:
    """Where e2ad keeps its data without `state_dir`: $XDG_STATE_HOME/e2ad, else ~/.local/state/e2ad."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "e2ad"


def field_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Every field's dotted path as the file spells it, sections included (kafka, kafka.bootstrap_servers, …).

    A field is named by its alias where it has one (notifications.email.from), and an optional
    section (`email: EmailSettings | None`) is descended into like any other.
    """
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        yield path
        section = _section_model(field.annotation)
        if section is not None:
            yield from field_paths(section, path + ".")


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The model of a section's annotation, `Section` or `Section | None`; None for a plain field."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    candidates = typing.get_args(annotation) if union else (annotation,)
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def secret_file_path(secret: tuple[str, ...]) -> str:
    """The dotted path of a secret's file setting: ("ad", "bind_password") → ad.bind_password_file."""
    return ".".join((*secret[:-1], f"{secret[-1]}_file"))


def _known_paths() -> list[str]:
    return [*field_paths(), *(secret_file_path(secret) for secret in sorted(SECRET_FIELDS))]


def _did_you_mean(path: str) -> str | None:
    close = difflib.get_close_matches(path, _known_paths(), n=1)
    return close[0] if close else None


def _did_you_mean_field(err: ErrorDetails) -> str:
    if err["type"] != "extra_forbidden":
        return ""
    guess = _did_you_mean(".".join(str(p) for p in err["loc"]))
    return f"; did you mean {guess}?" if guess else ""


def _variable(path: str) -> str:
    return ENV_PREFIX + path.upper().replace(".", ENV_DELIMITER)


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """E2AD_… variables that name no field: a typo must not leave a setting silently at its default."""
    known = set(_known_paths())
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_VARIABLE or upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        path = upper[len(ENV_PREFIX) :].lower().replace(ENV_DELIMITER, ".")
        if path in known:
            continue
        guess = _did_you_mean(path)
        hint = f"; did you mean {_variable(guess)} ({guess})?" if guess else ""
        problems.append(f"{name} names no setting{hint}")
    return problems


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, over the mapping load_settings was given.

    It reads os.environ through _load_env_vars, the hook its .env-file source overrides too; the
    unit tests of this module fail loudly should a pydantic-settings release rename it.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(  # type: ignore[arg-type]  # a plain model: every option is passed here
            Settings, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}  # case_sensitive=False


def _environment_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        return _Environment(environ)()
    except SettingsError as exc:
        error = exc
    # A collection or section that is not JSON. pydantic-settings names the top-level field only:
    # read the variables one by one to name the variable.
    problems = []
    for name in sorted(environ):
        try:
            _Environment({name: environ[name]})()
        except SettingsError as exc:
            problems.append(f"{name}: expected JSON ({exc.__cause__})")
    raise ConfigError("invalid configuration in the environment:\n  " + ("\n  ".join(problems) or str(error)))


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    """Overlay a layer on the ones below it, section by section."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"configuration file {path} is nested too deeply to be a configuration") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar YAML cannot construct, e.g. 2026-13-45
        raise ConfigError(f"configuration file {path} holds a value YAML cannot read ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ConfigError(f"configuration file {path} must hold a mapping of sections, not {kind}")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, never the text of the line: it may hold a secret (bind_password: …)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return type(exc).__name__
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"{what or type(exc).__name__}{where}"


def _read_secret_files(data: dict[str, Any]) -> None:
    for secret in sorted(SECRET_FIELDS):
        *sections, field = secret
        node: object = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict) or f"{field}_file" not in node:
            continue  # a section that is not a mapping is the model's to report
        secret_path = Path(str(node.pop(f"{field}_file")))
        try:
            node[field] = secret_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{secret_file_path(secret)}: cannot read {secret_path}: {exc.strerror}") from None
        except ValueError as exc:  # a NUL in the path; a file that is not UTF-8 text (its bytes are not shown)
            reason = "not UTF-8 text" if isinstance(exc, UnicodeError) else "not a usable path"
            raise ConfigError(f"{secret_file_path(secret)}: cannot read {secret_path!r}: {reason}") from None
