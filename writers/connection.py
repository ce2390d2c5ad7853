"""The one place an LDAP connection to AD is built from AdSettings.

LDAPS, or StartTLS on ldap://, always validating the DC's certificate against ad.ca_file
(and ad.tls_server_name when the URL names the DC by address); plain LDAP only with the
explicit ad.insecure opt-in. Simple bind, since ldap3's NTLM does not work against Samba and
Kerberos is not needed for a service account over TLS (samba-ad-dc.md §4).
"""

from __future__ import annotations

import contextlib
import ssl

import ldap3
from ldap3.core.exceptions import LDAPException

from schemas.config import AdSettings
from writers.errors import DirectoryUnavailable

# A member modify of thousands of values takes about a second (samba-ad-dc.md §5); a DC that
# does not answer within this is treated as gone, so the writer reconnects instead of hanging.
OPERATION_TIMEOUT_SECONDS = 60  # ldap3 packs it into SO_RCVTIMEO: an int
INVALID_CREDENTIALS = 49


class BindRejected(Exception):
    """The DC refused our credentials: a configuration error, retrying would not help."""


def connect(settings: AdSettings) -> ldap3.Connection:
    """An open, bound connection. Raises DirectoryUnavailable when the DC cannot be reached."""
    if not settings.bind_dn or settings.bind_password is None:
        raise BindRejected("ad.bind_dn and ad.bind_password are required")
    plain = settings.url.lower().startswith("ldap://")
    tls = None
    if not plain or settings.start_tls:  # AdSettings only allows plain ldap:// with ad.insecure
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            valid_names=[settings.tls_server_name] if settings.tls_server_name else None,
        )
    server = ldap3.Server(settings.url, tls=tls, get_info=ldap3.NONE, connect_timeout=settings.connect_timeout_seconds)
    connection = ldap3.Connection(
        server,
        settings.bind_dn,
        settings.bind_password.get_secret_value(),
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
        raise DirectoryUnavailable(f"cannot reach the DC at {settings.url}: {exc}") from exc
    if not bound:
        close(connection)
        if result["result"] == INVALID_CREDENTIALS:
            raise BindRejected(f"the DC at {settings.url} rejected the credentials of {settings.bind_dn}")
        raise DirectoryUnavailable(f"bind to {settings.url} as {settings.bind_dn} failed: {result}")
    return connection


def close(connection: ldap3.Connection) -> None:
    """Unbind, ignoring a connection that is already broken (that is usually why we close it)."""
    with contextlib.suppress(LDAPException):
        connection.unbind()
