"""The configuration file's model. Loading (YAML + E2AD_… variables + secret files) is runtime.config."""

from __future__ import annotations

import ipaddress
import json
import re
from email.headerregistry import HeaderRegistry
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

GRAPH_PUBLIC_CLOUD = "https://graph.microsoft.com/v1.0"
AUTHORITY_PUBLIC_CLOUD = "https://login.microsoftonline.com"


def _json_from_environment(value: object) -> object:
    """A collection given as one environment variable arrives as JSON text; anything else as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"expected JSON: {exc}") from None
    return value


def check_proxy_url(url: str) -> None:
    """Raise ValueError unless url is an http:// proxy, the kind both of Graph's HTTP clients tunnel through."""
    if "://" not in url:
        raise ValueError("must be a URL: http://[user:password@]host:port")
    parts = urlsplit(url)
    if parts.scheme != "http":
        # TLS to the proxy itself would need a trust setting of its own, and aiohttp (the token requests)
        # ignores https:// proxies given in the environment.
        raise ValueError(f"must be an http:// proxy URL, not {parts.scheme}://")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    if not parts.hostname:
        raise ValueError("names no proxy host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be http://[user:password@]host:port, without a path or query")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = Field(4, ge=1, le=1024)  # for topics keyed by object id
    replication_factor: int = Field(1, ge=1)
    # How long ad.results (the provisioning log) and ad.dead-letter keep a record; Cloud Sync keeps
    # its provisioning logs 30 days. Applied to existing topics too, at each stage's start.
    results_retention_days: int = Field(30, ge=1, le=3650)
    client_id: str = "e2ad"
    # This process's stable name in its stage's consumer group: a static member (Kafka's KIP-345), which
    # a restart under the same name replaces at once. Unique among the running copies of a stage (the
    # groups are per stage, so one process of each stage may share it); None: a dynamic member.
    group_instance_id: str | None = Field(None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    # Managed clusters (Confluent Cloud, MSK, Event Hubs, Strimzi) need TLS and/or SASL.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_ca_file: Path | None = None  # the brokers' CA (PEM); without it the system's trust store
    ssl_cert_file: Path | None = None  # a client certificate (PEM) for mutual TLS
    ssl_key_file: Path | None = None  # its private key, when ssl_cert_file does not hold it
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _security_consistent(self) -> KafkaSettings:
        protocol = self.security_protocol
        if protocol not in TLS_PROTOCOLS:
            unused = [n for n in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file") if getattr(self, n) is not None]
            if unused:
                raise ValueError(f"kafka.{unused[0]} needs kafka.security_protocol SSL or SASL_SSL (it is {protocol})")
        if self.ssl_key_file is not None and self.ssl_cert_file is None:
            raise ValueError("kafka.ssl_key_file needs kafka.ssl_cert_file, the certificate it belongs to")
        if protocol not in SASL_PROTOCOLS:
            unused = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is not None]
            if unused:
                raise ValueError(
                    f"kafka.{unused[0]} needs kafka.security_protocol SASL_PLAINTEXT or SASL_SSL (it is {protocol})"
                )
            return self
        if self.sasl_mechanism is None:
            raise ValueError(f"kafka.sasl_mechanism is required with kafka.security_protocol {protocol}")
        if self.sasl_mechanism == "OAUTHBEARER":
            # aiokafka needs a sasl_oauth_token_provider, and each cluster gets its tokens differently
            # (Entra ID for Event Hubs, an OIDC client-credentials endpoint, AWS IAM for MSK).
            raise ValueError(
                "kafka.sasl_mechanism OAUTHBEARER is not supported yet (no token provider): use PLAIN or SCRAM-SHA-*"
            )
        missing = [name for name in ("sasl_username", "sasl_password") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"kafka.{missing[0]} is required with kafka.sasl_mechanism {self.sasl_mechanism}")
        return self


class GraphSettings(_Section):
    """Where and how to read the tenant. Without tenant_id the pipeline has no real tenant."""

    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    certificate_path: Path | None = None  # PEM with key and certificate, instead of a secret
    # National clouds (graph.microsoft.us, login.microsoftonline.us, …) and the tests' stand-in.
    base_url: AnyHttpUrl = AnyHttpUrl(GRAPH_PUBLIC_CLOUD)
    authority_host: AnyHttpUrl = AnyHttpUrl(AUTHORITY_PUBLIC_CLOUD)
    ca_bundle: Path | None = None  # trusted besides the system's CAs, for Graph and the authority
    # http://[user:password@]host:port for Graph and the authority; without it HTTPS_PROXY / NO_PROXY apply.
    # Secret: the URL may carry the proxy's credentials.
    proxy: SecretStr | None = None
    delta_interval_seconds: float = Field(120.0, gt=0)  # a delta round runs at least this often
    hint_debounce_seconds: float = Field(0.3, ge=0)  # notifications inside this window share a round
    page_size: int | None = Field(None, ge=1, le=999)

    @property
    def configured(self) -> bool:
        return self.tenant_id is not None

    @field_validator("proxy")
    @classmethod
    def _proxy_is_http(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_proxy_url(v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _credentials_complete(self) -> GraphSettings:
        if self.tenant_id is not None:
            if not self.client_id:
                raise ValueError("graph.client_id is required when graph.tenant_id is set")
            if self.client_secret is None and self.certificate_path is None:
                raise ValueError("graph.client_secret or graph.certificate_path is required")
        return self


class WebhookSettings(_Section):
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(8080, ge=0, le=65535)
    # The https URL Graph posts to (reverse proxy in front of listen_host:listen_port).
    # Without it e2ad runs on delta rounds alone.
    public_url: AnyHttpUrl | None = None
    client_state: SecretStr | None = None  # at most 128 characters (subscription resource)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    subscription_minutes: int = Field(41_760, ge=45, le=41_760)  # Graph's maximum for groups/users
    renew_before_minutes: int = Field(24 * 60, ge=5)

    @field_validator("client_state")
    @classmethod
    def _client_state_length(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not 1 <= len(v.get_secret_value()) <= 128:
            raise ValueError("must be 1 to 128 characters (Graph's limit for clientState)")
        return v

    @model_validator(mode="after")
    def _secret_with_url(self) -> WebhookSettings:
        if self.public_url is not None and self.client_state is None:
            raise ValueError("webhook.client_state is required when webhook.public_url is set")
        return self


class AdSettings(_Section):
    url: str = "ldaps://127.0.0.1:636"
    # simple: bind_dn and bind_password; kerberos: SASL GSSAPI (the `kerberos` extra), over the same TLS.
    auth: Literal["simple", "kerberos"] = "simple"
    bind_dn: str | None = None
    bind_password: SecretStr | None = None
    # Kerberos: the service principal's client keytab; without one, the process's credential cache
    # (KRB5CCNAME, e.g. kept fresh by k5start). The principal defaults to the keytab's or cache's first.
    keytab: Path | None = None
    kerberos_principal: str | None = None
    base_dn: str | None = None  # the domain's naming context: where anchors are searched
    ca_file: Path | None = None
    # The name the DC's certificate carries, when the URL names it by address (e.g. 127.0.0.1).
    tls_server_name: str | None = None
    start_tls: bool = False
    # Plain, unencrypted LDAP needs this explicit opt-in.
    insecure: bool = False
    connect_timeout_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _transport_is_safe(self) -> AdSettings:
        if self.url.lower().startswith("ldap://") and not (self.start_tls or self.insecure):
            raise ValueError("ad.url is plain ldap://: set ad.start_tls, or ad.insecure to go unencrypted")
        return self

    @model_validator(mode="after")
    def _credentials_fit_auth(self) -> AdSettings:
        if self.auth == "simple":
            unused = [name for name in ("keytab", "kerberos_principal") if getattr(self, name) is not None]
            if unused:
                raise ValueError(f"ad.{unused[0]} is only used with ad.auth kerberos (ad.auth is simple)")
        else:
            unused = [name for name in ("bind_dn", "bind_password") if getattr(self, name) is not None]
            if unused:
                raise ValueError(
                    f"ad.{unused[0]} is only used with ad.auth simple; Kerberos binds as ad.keytab's principal"
                )
            if self.kerberos_host is None:
                raise ValueError(
                    "ad.auth kerberos needs the DC's host name: ad.url names it by address, set ad.tls_server_name"
                )
        return self

    @property
    def kerberos_host(self) -> str | None:
        """The DC's name in its ldap/<host> service principal: the URL's host, or tls_server_name for an address."""
        host = urlsplit(self.url).hostname
        if host is None:
            return self.tls_server_name
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host
        return self.tls_server_name


class ProvisioningSettings(_Section):
    # parentDistinguishedName for every group (the expression language will make it a mapping).
    target_container: str | None = None
    # The only containers (with their subtrees) the writer creates groups in, moves them into or
    # deletes them from. Empty: the target container; without one, anywhere below ad.base_dn.
    # A parentDistinguishedName mapping that routes groups to several OUs lists them all here.
    containers: list[str] = Field(default_factory=list)
    # A group soft-deleted in Entra or leaving the scope: delete it from AD, or keep it.
    on_soft_delete_or_out_of_scope: Literal["delete", "keep"] = "delete"

    # From E2AD_PROVISIONING__CONTAINERS as a JSON list.
    _list_from_environment = field_validator("containers", mode="before")(_json_from_environment)

    @property
    def write_containers(self) -> tuple[str, ...]:
        """Where the writer may write; empty means anywhere below the base DN."""
        if self.containers:
            return tuple(self.containers)
        return (self.target_container,) if self.target_container else ()


# Scoping filter operators as Cloud Sync's configuration screen spells them (entra-provisioning.md §1.2).
ScopeOperator = Literal[
    "EQUALS",
    "NOT EQUALS",
    "IS TRUE",
    "IS FALSE",
    "IS NULL",
    "IS NOT NULL",
    "REGEX MATCH",
    "NOT REGEX MATCH",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUALS",
    "INCLUDES",
    "&",
    "!&",
    "ENDS_WITH",
]
SCOPE_OPERATORS: tuple[str, ...] = get_args(ScopeOperator)
UNARY_OPERATORS = frozenset({"IS TRUE", "IS FALSE", "IS NULL", "IS NOT NULL"})
INTEGER_OPERATORS = frozenset({"GREATER_THAN", "GREATER_THAN_OR_EQUALS"})
_OPERATOR_SPELLINGS = {name.replace("_", " "): name for name in SCOPE_OPERATORS}
# An integer as GREATER_THAN(_OR_EQUALS) read it, in the configuration and in an attribute's string.
INTEGER = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ScopeClause(_Section):
    """One attribute, one operator, one value; the clauses of a filter are AND-ed."""

    attribute: str = Field(min_length=1)  # a group attribute as Graph names it, or extension_<appId>_<name>
    operator: ScopeOperator
    # None for IS TRUE / IS FALSE / IS NULL / IS NOT NULL; an integer for GREATER_THAN(_OR_EQUALS); a
    # string for the others, a YAML Boolean read as .NET prints it ("True", "False"), the form a
    # Boolean attribute is compared in. bool first: pydantic would otherwise read true as the integer 1.
    value: bool | str | int | None = None

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_spelling(cls, value: object) -> object:
        # Graph's synchronization API spells them with underscores (REGEX_MATCH), the screen with spaces.
        if isinstance(value, str):
            return _OPERATOR_SPELLINGS.get(value.strip().upper().replace("_", " "), value)
        return value

    @model_validator(mode="after")
    def _value_fits_operator(self) -> ScopeClause:
        if self.operator in UNARY_OPERATORS:
            if self.value is not None:
                raise ValueError(f"operator {self.operator} takes no value (got {self.value!r})")
        elif self.value is None:
            raise ValueError(f"operator {self.operator} needs a value")
        elif self.operator in INTEGER_OPERATORS:
            # Digits only: Python's int() would also take "1_000" and True.
            if isinstance(self.value, bool) or not INTEGER.match(str(self.value)):
                raise ValueError(f"operator {self.operator} compares integers: {self.value!r} is not one")
            self.value = int(self.value)
        elif isinstance(self.value, bool | int):
            self.value = str(self.value)  # True → "True", as .NET prints a Boolean
        elif self.value == "":
            # No attribute value equals, contains or ends with it (an empty value is null): the clause
            # would be constant. IS NULL / IS NOT NULL say what was meant.
            raise ValueError(f"operator {self.operator} needs a non-empty value (IS NULL tests for an empty attribute)")
        return self


def _object_id(group_id: str) -> str:
    if not _OBJECT_ID.match(group_id):
        raise ValueError(f"{group_id!r} is not an Entra object id (a GUID)")
    return group_id.lower()  # Graph writes them in lower case


def _has_clauses(clauses: list[ScopeClause]) -> list[ScopeClause]:
    if not clauses:
        # An empty AND is true: it would let every group through, the opposite of what was meant.
        raise ValueError("a filter needs at least one clause")
    return clauses


class ScopeSettings(_Section):
    """Which cloud security groups are provisioned (entra-provisioning.md §1.1, §1.2)."""

    # all: every cloud security group (the always-on security clause); selected: only the groups listed.
    mode: Literal["all", "selected"] = "all"
    groups: list[Annotated[str, AfterValidator(_object_id)]] = Field(default_factory=list)  # for mode selected
    # An OR of filters, each an AND of clauses; none: no filter. Evaluated after the security clause.
    filters: list[Annotated[list[ScopeClause], AfterValidator(_has_clauses)]] = Field(default_factory=list)

    _list_from_environment = field_validator("groups", "filters", mode="before")(_json_from_environment)

    @model_validator(mode="after")
    def _selection_is_explicit(self) -> ScopeSettings:
        if self.mode == "selected" and not self.groups:
            raise ValueError("scope.groups is empty with scope.mode selected: no group would be provisioned")
        if self.mode == "all" and self.groups:
            raise ValueError("scope.groups is only used with scope.mode selected (scope.mode is all)")
        return self


class MembershipSettings(_Section):
    # Write synced users (onPremisesObjectIdentifier → objectGUID) as members. Cloud Sync's 2026 toggle
    # "Provision membership to on-premises users" is off by default; e2ad's is on (docs/configuration.md).
    on_premises_users: bool = True


class ProcessorSettings(_Section):
    # Where the processors serve /healthz and Prometheus /metrics; no port, no web server.
    web_host: str = "127.0.0.1"
    web_port: int | None = Field(None, ge=1, le=65535)


class DeleteSettings(_Section):
    """The deletion guard (processors/deletion_guard.py): a burst of deletes is held, not applied."""

    # A burst of this many group deletes or more within window_seconds is staged for an operator
    # (Cloud Sync's accidental-deletion threshold: 500, at most 499 pass); 0: no guard.
    threshold: int = Field(500, ge=0)
    # The burst window; every delete waits this long before it is released, so that a burst is
    # recognised before any of it reaches AD.
    window_seconds: float = Field(300.0, gt=0)


class WriterSettings(_Section):
    """The AD writers: transient-fault backoff, quarantine (entra-provisioning.md §4.2), web server."""

    name: str | None = None  # on e2ad.status and for `e2ad quarantine clear --writer`; default host:pid
    # While the DC is unreachable or busy the writer pauses its partitions, doubling the wait up to the max.
    retry_initial_seconds: float = Field(0.5, gt=0)
    retry_max_seconds: float = Field(30.0, gt=0)
    # Consistent failures quarantine the writer, with Entra's thresholds, counted over the groups
    # decided since it started or last left quarantine: from evaluation_start failing groups on,
    # more than failure_ratio of them, or more than failure_limit; or more than absolute_limit
    # failing groups counting reference failures (members not resolved).
    quarantine_evaluation_start: int = Field(5_000, ge=1)
    quarantine_failure_ratio: float = Field(0.4, gt=0, le=1)
    quarantine_failure_limit: int = Field(40_000, ge=1)
    quarantine_absolute_limit: int = Field(60_000, ge=1)
    # Retries after entering quarantine (6 h, 12 h, 24 h), then one every retry_every; disabled
    # after give_up (28 days) until `e2ad quarantine clear`.
    quarantine_retry_seconds: list[float] = Field(default_factory=lambda: [6 * 3600.0, 12 * 3600.0, 24 * 3600.0])
    quarantine_retry_every_seconds: float = Field(24 * 3600.0, gt=0)
    quarantine_give_up_seconds: float = Field(28 * 24 * 3600.0, gt=0)
    # Where the writer serves /healthz and Prometheus /metrics; no port: off, 0: any free port.
    web_host: str = "127.0.0.1"
    web_port: int | None = Field(None, ge=0, le=65535)

    # From E2AD_WRITER__QUARANTINE_RETRY_SECONDS as a JSON list, e.g. [1, 2, 4].
    _list_from_environment = field_validator("quarantine_retry_seconds", mode="before")(_json_from_environment)

    @field_validator("quarantine_retry_seconds")
    @classmethod
    def _schedule_ascends(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value) or value != sorted(value):
            raise ValueError("must be a non-empty, ascending list of positive seconds after entering quarantine")
        return value


def mailbox(value: str) -> str:
    """Raise ValueError unless value is one e-mail address, alone or with a name (`e2ad <e2ad@corp.example>`).

    The standard library's header parser, not email-validator: that one refuses the special-use
    domains on-premises mail often lives under (corp.local, localhost).
    """
    try:
        header = _HEADERS("to", value)
        addresses = header.addresses
    except Exception:  # the parser fails on some broken input (e.g. `a@`) instead of noting a defect
        raise ValueError(f"{value!r} is not an e-mail address") from None
    if header.defects or len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"{value!r} is not one e-mail address (name@domain, or Name <name@domain>)")
    return value


_HEADERS = HeaderRegistry()
Mailbox = Annotated[str, AfterValidator(mailbox)]
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailSettings(_Section):
    """The SMTP server and the administrators that deletion-guard notifications go to."""

    smtp_host: str
    smtp_port: int | None = Field(None, ge=1, le=65535)  # default by security: 587, 465, 25
    # starttls: plain connection upgraded with STARTTLS (required, not opportunistic); tls: TLS from the
    # first byte (SMTPS); none: unencrypted. With TLS the certificate and the host name are always verified.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None  # AUTH with username and password; without both, no AUTH
    password: SecretStr | None = None
    # `from` is a Python keyword: the field is `sender`, YAML and E2AD_NOTIFICATIONS__EMAIL__FROM say from.
    sender: Mailbox = Field(alias="from")
    to: list[Mailbox] = Field(min_length=1)
    ca_file: Path | None = None  # the server's CA (PEM); without it the system's trust store
    timeout_seconds: float = Field(30.0, gt=0)  # per connection attempt and per SMTP reply

    @field_validator("to", mode="before")
    @classmethod
    def _one_address_is_a_list(cls, value: object) -> object:
        # `to: admins@corp.example` in YAML; the environment gives a JSON list, decoded by pydantic-settings.
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _login_is_safe(self) -> EmailSettings:
        where = "notifications.email"
        if self.username is not None and self.password is None:
            raise ValueError(f"{where}.password (or password_file) is required with {where}.username")
        if self.password is not None and self.username is None:
            raise ValueError(f"{where}.username is required with {where}.password")
        if self.security == "none":
            if self.ca_file is not None:
                raise ValueError(f"{where}.ca_file needs {where}.security starttls or tls (it is none)")
            # The password would cross the network in clear; on the host itself (a local relay) it does not.
            if self.username is not None and not _is_loopback(self.smtp_host):
                raise ValueError(
                    f"{where}.username with {where}.security none sends the password unencrypted: "
                    f"use starttls or tls, or a relay on this host ({where}.smtp_host localhost)"
                )
        return self

    @property
    def port(self) -> int:
        return self.smtp_port if self.smtp_port is not None else SMTP_PORTS[self.security]


class NotificationSettings(_Section):
    # Without email, a tripped deletion guard is logged only.
    email: EmailSettings | None = None


MappingType = Literal["direct", "constant", "expression"]
MappingApply = Literal["always", "on_create"]
# The field of a rule that holds what flows, by the rule's type.
_MAPPING_FIELDS: dict[str, str] = {"direct": "source", "constant": "value", "expression": "expression"}
# A pre-Windows 2000 name that followed renames would break what uses it: it flows on create unless told otherwise.
_ON_CREATE_BY_DEFAULT = frozenset({"samaccountname"})
_LDAP_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class MappingRule(_Section):
    """One attribute mapping, as Cloud Sync's mapping screen has it (entra-provisioning.md §2.2)."""

    target: str  # the AD attribute written
    type: MappingType
    source: str | None = None  # direct: the Entra attribute copied
    value: str | None = None  # constant: the text written
    expression: str | None = None  # expression: in the Entra expression language
    # always: on create and on every update; on_create: only when the writer creates the group.
    apply: MappingApply = "always"
    # Used when the source (or the expression) is null, on create only, as in Cloud Sync.
    default: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_by_target(cls, data: object) -> object:
        if isinstance(data, dict) and "apply" not in data:
            target = data.get("target")
            if isinstance(target, str) and target.casefold() in _ON_CREATE_BY_DEFAULT:
                return {**data, "apply": "on_create"}
        return data

    @field_validator("target")
    @classmethod
    def _attribute_name(cls, value: str) -> str:
        if not _LDAP_ATTRIBUTE.match(value):
            raise ValueError(f"{value!r} is not an LDAP attribute name (a letter, then letters, digits and -)")
        return value

    @model_validator(mode="after")
    def _fields_fit_type(self) -> MappingRule:
        wanted = _MAPPING_FIELDS[self.type]
        if getattr(self, wanted) is None:
            raise ValueError(f"type {self.type} needs {wanted}")
        others = [name for name in _MAPPING_FIELDS.values() if name != wanted and getattr(self, name) is not None]
        if others:
            raise ValueError(f"type {self.type} takes {wanted}, not {' or '.join(others)}")
        if self.type == "constant" and self.default is not None:
            raise ValueError("type constant is never null: default does not apply")
        return self


def mapping_label(index: int, target: object = None) -> str:
    """How errors name a mapping: its position in the configuration's list, and its target."""
    return f"mappings[{index}] ({target})" if isinstance(target, str) and target else f"mappings[{index}]"


def parse_mappings(value: object) -> tuple[dict[int, MappingRule], list[str]]:
    """The rules of a `mappings:` value, by position, and what is wrong with it, each naming the mapping.

    The list form is a list of rules; the older dict form (target → expression) means one
    expression rule per entry, in order, with the rules' default `apply`.
    """
    if value is None:
        return {}, []
    if isinstance(value, dict):
        items: list[object] = [
            {"target": target, "type": "expression", "expression": text} for target, text in value.items()
        ]
    elif isinstance(value, list):
        items = value
    else:
        return {}, [f"mappings: expected a list of rules or a dict of target → expression, not {type(value).__name__}"]
    rules: dict[int, MappingRule] = {}
    problems: list[str] = []
    for index, item in enumerate(items):
        target = (
            item.target if isinstance(item, MappingRule) else item.get("target") if isinstance(item, dict) else None
        )
        try:
            rules[index] = MappingRule.model_validate(item)
        except ValidationError as exc:
            problems += [f"{mapping_label(index, target)}: {_rule_problem(error)}" for error in exc.errors()]
    first: dict[str, int] = {}
    for index, rule in rules.items():
        # LDAP attribute names are case-insensitive: description and Description are one attribute.
        earlier = first.setdefault(rule.target.casefold(), index)
        if earlier != index:
            problems.append(
                f"{mapping_label(index, rule.target)}: {rule.target} is mapped twice (also mappings[{earlier}])"
            )
    return rules, problems


def _rule_problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return f"{where}: {message}" if where else message


class ProvisioningJob(_Section):
    """The provisioning configuration: what `e2ad config apply` publishes to e2ad.config and stages follow live.

    The rest of Settings (Kafka, Graph, AD, webhook, …) says how this process reaches the services;
    these sections say which groups flow and what they look like in AD, the same for every stage.
    """

    scope: ScopeSettings = Field(default_factory=ScopeSettings)
    # Rules over Cloud Sync's defaults, each replacing the default of its target
    # (parentDistinguishedName maps the container, e.g. with Switch([displayName], …)); the dict form
    # (target → expression) is accepted too. The expressions and sources are checked when the file
    # is loaded (processors/mapping.py), the rules' shape here.
    mappings: list[MappingRule] = Field(default_factory=list)
    membership: MembershipSettings = Field(default_factory=MembershipSettings)
    tokens: dict[str, str] = Field(default_factory=dict)  # values of %Token% placeholders
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)

    # From E2AD_TOKENS as a JSON object: names keep their case.
    _maps_from_environment = field_validator("tokens", mode="before")(_json_from_environment)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mapping_rules(cls, value: object) -> object:
        # From E2AD_MAPPINGS as JSON, in either form; every problem is reported, each naming its mapping.
        rules, problems = parse_mappings(_json_from_environment(value))
        if problems:
            raise PydanticCustomError("mappings", "{problems}", {"problems": "; ".join(problems)})
        return list(rules.values())


JOB_SECTIONS = tuple(ProvisioningJob.model_fields)


class Settings(ProvisioningJob):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    ad: AdSettings = Field(default_factory=AdSettings)
    processors: ProcessorSettings = Field(default_factory=ProcessorSettings)
    deletes: DeleteSettings = Field(default_factory=DeleteSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    state_dir: Path | None = None  # local services' data; default ~/.local/state/e2ad
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def job(self) -> ProvisioningJob:
        """This file's provisioning configuration."""
        return ProvisioningJob.model_validate({name: getattr(self, name) for name in JOB_SECTIONS})

    def with_job(self, job: ProvisioningJob) -> Settings:
        """These settings with another provisioning configuration (the active one, from e2ad.config)."""
        return self.model_copy(update={name: getattr(job, name) for name in JOB_SECTIONS})
