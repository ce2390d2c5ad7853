"""The one place an LDAP connection to AD is built from AdSettings.

LDAPS, or StartTLS on ldap://, always validating the DC's certificate against ad.ca_file
(and ad.tls_server_name when the URL names the DC by address); plain LDAP only with the
explicit ad.insecure opt-in. Simple bind by default (ldap3's NTLM does not work against Samba,
samba-ad-dc.md §4); with ad.auth kerberos a SASL GSSAPI bind over the same TLS, as the principal
of ad.keytab or of the process's credential cache. gssapi is an optional extra, imported only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPSSLConfigurationError

from schemas.config import AdSettings
from writers.errors import DirectoryUnavailable

# A member modify of thousands of values takes about a second (samba-ad-dc.md §5); a DC that
# does not answer within this is treated as gone, so the writer reconnects instead of hanging.
OPERATION_TIMEOUT_SECONDS = 60  # ldap3 packs it into SO_RCVTIMEO: an int
INVALID_CREDENTIALS = 49
# MIT Kerberos errors (com_err codes, as GSSAPI's unsigned minor status) that mean the KDC could
# not be reached, not that the configuration is wrong: no KDC answered, or none was found in DNS.
KRB5_KDC_UNREACH = -1765328228 & 0xFFFFFFFF
KRB5_REALM_CANT_RESOLVE = -1765328230 & 0xFFFFFFFF
_KDC_UNREACHABLE = frozenset({KRB5_KDC_UNREACH, KRB5_REALM_CANT_RESOLVE})


class BindRejected(Exception):
    """The DC refused our credentials: a configuration error, retrying would not help."""


def connect(settings: AdSettings) -> ldap3.Connection:
    """An open, bound connection.

    Raises DirectoryUnavailable when the DC (or, for Kerberos, the KDC) cannot be reached, and
    BindRejected when the credentials or their configuration are wrong.
    """
    kerberos_errors: tuple[type[Exception], ...] = ()  # `except ()` catches nothing: simple bind
    if settings.auth == "kerberos":
        gssapi = _import_gssapi()
        kerberos_errors = (gssapi.exceptions.GSSError,)
        credentials = _kerberos_credentials(gssapi, settings)
        who = f"Kerberos principal {credentials.name}"
        connection = _connection(
            settings,
            authentication=ldap3.SASL,
            sasl_mechanism=ldap3.KERBEROS,
            # The ticket is for ldap/<the DC's name>; the authorization id is the principal's own.
            sasl_credentials=(settings.kerberos_host, None, credentials),
        )
    else:
        if not settings.bind_dn or settings.bind_password is None:
            raise BindRejected("ad.bind_dn and ad.bind_password are required")
        who = settings.bind_dn
        connection = _connection(settings, user=settings.bind_dn, password=settings.bind_password.get_secret_value())
    plain = settings.url.lower().startswith("ldap://")
    try:
        connection.open()
        if plain and settings.start_tls:
            started, result, _, _ = connection.start_tls()
            if not started:
                close(connection)
                raise DirectoryUnavailable(f"StartTLS to {settings.url} failed: {result}")
        bound, result, _, _ = connection.bind()
    except LDAPException as exc:
        close(connection)
        raise DirectoryUnavailable(f"cannot reach the DC at {settings.url} (ad.url): {exc}") from exc
    except kerberos_errors as exc:  # e.g. no ticket for ldap/<host>: the SPN, or the KDC gone since
        close(connection)
        raise _kerberos_failure(exc, f"Kerberos bind to {settings.url} as {who}") from exc
    if not bound:
        close(connection)
        if result["result"] == INVALID_CREDENTIALS:
            raise BindRejected(f"the DC at {settings.url} rejected the credentials of {who}")
        raise DirectoryUnavailable(f"bind to {settings.url} as {who} failed: {result}")
    return connection


def close(connection: ldap3.Connection) -> None:
    """Unbind, ignoring a connection that is already broken (that is usually why we close it)."""
    with contextlib.suppress(LDAPException):
        connection.unbind()


def _connection(settings: AdSettings, **bind: Any) -> ldap3.Connection:
    plain = settings.url.lower().startswith("ldap://")
    tls = None
    if not plain or settings.start_tls:  # AdSettings only allows plain ldap:// with ad.insecure
        try:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
                valid_names=[settings.tls_server_name] if settings.tls_server_name else None,
            )
        except LDAPSSLConfigurationError as exc:  # a missing or unreadable CA file: configuration, not the DC
            raise BindRejected(f"ad.ca_file {settings.ca_file}: {exc}") from None
    server = ldap3.Server(settings.url, tls=tls, get_info=ldap3.NONE, connect_timeout=settings.connect_timeout_seconds)
    return ldap3.Connection(
        server,
        **bind,
        client_strategy=ldap3.SAFE_SYNC,  # every call returns its own result: no shared last-result state
        auto_referrals=False,
        raise_exceptions=False,
        # ldap3's automatic range retrieval drops the request's controls (the extended-DN one the
        # member comparison needs), so directory.py retrieves member ranges itself; without empty
        # attributes ldap3 also avoids its KeyError on explicit `member;range=` requests.
        auto_range=False,
        return_empty_attributes=False,
        receive_timeout=OPERATION_TIMEOUT_SECONDS,
    )


def _import_gssapi() -> Any:
    try:
        import gssapi
    except ImportError:
        raise BindRejected(
            "ad.auth is kerberos, but the gssapi package is not installed: pip install 'e2ad[kerberos]'"
            " (it builds against libkrb5-dev)"
        ) from None
    return gssapi


def _kerberos_credentials(gssapi: Any, settings: AdSettings) -> Any:
    """Fresh initiator credentials for every connection.

    ldap3 wraps the handle in a gssapi.Credentials of its own, which releases it when it goes away
    after the bind, so a handle serves one bind only (a second one finds no credentials).
    """
    name = None
    if settings.kerberos_principal:
        name = gssapi.Name(settings.kerberos_principal, gssapi.NameType.kerberos_principal)
    principal = settings.kerberos_principal or "its first principal"
    store = None
    source = f"the credential cache, for {principal} (ad.keytab is not set)"
    if settings.keytab is not None:
        if not (settings.keytab.is_file() and os.access(settings.keytab, os.R_OK)):
            raise BindRejected(f"ad.keytab: cannot read {settings.keytab}")
        # Tickets go into a memory cache of this process, one per keytab and principal: the
        # process's default cache is left alone, and reconnects reuse the TGT; MIT Kerberos gets
        # a new one from the keytab once half of its lifetime is gone (measured with 40 s tickets).
        cache = hashlib.sha256(f"{settings.keytab.resolve()}\0{principal}".encode()).hexdigest()[:16]
        store = {"client_keytab": str(settings.keytab), "ccache": f"MEMORY:e2ad-{cache}"}
        source = f"ad.keytab {settings.keytab}, for {principal}"
    try:
        return gssapi.Credentials(name=name, usage="initiate", store=store)
    except gssapi.exceptions.GSSError as exc:
        raise _kerberos_failure(exc, f"no Kerberos ticket from {source}") from exc


def _kerberos_failure(exc: Any, what: str) -> Exception:
    """DirectoryUnavailable when the KDC cannot be reached; anything else is the configuration's."""
    reason = "; ".join(exc.get_all_statuses(exc.min_code, False)) or str(exc)
    if exc.min_code in _KDC_UNREACHABLE:
        return DirectoryUnavailable(f"{what}: {reason}")
    return BindRejected(f"{what}: {reason}")
