"""The writer's Kerberos bind (ad.auth kerberos) against the real Samba DC, and how it fails.

The service principal's keytab is exported from the DC with samba-tool; KRB5_CONFIG points at
the DC's client configuration (its KDC on loopback), as an operator's krb5.conf would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import ldap3
import pytest
from ldap3.protocol.formatters.formatters import format_sid

from harness.services import Endpoints, LocalServices
from schemas.config import AdSettings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, anchor_of
from writers.connection import BindRejected, close, connect
from writers.directory import Directory
from writers.errors import DirectoryUnavailable
from writers.provision import converge

pytestmark = pytest.mark.integration

PRINCIPAL = "Administrator@E2AD.TEST"
# In the token only when the KDC vouched for the identity, i.e. a Kerberos bind (not a simple one).
AUTHENTICATION_AUTHORITY_ASSERTED_IDENTITY = "S-1-18-1"


@pytest.fixture(scope="module")
def keytab(dc_services: LocalServices, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kerberos") / "e2ad.keytab"
    smb_conf = dc_services.dc_dir / "etc" / "smb.conf"
    subprocess.run(
        ["samba-tool", "domain", "exportkeytab", str(path), f"--principal={PRINCIPAL}", f"--configfile={smb_conf}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return path


@pytest.fixture(autouse=True)
def krb5_config(dc_endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRB5_CONFIG", dc_endpoints.ad_krb5_config)


def kerberos(settings: AdSettings, **changes: object) -> AdSettings:
    """The local DC's settings with a Kerberos bind instead of the administrator's password."""
    fields = settings.model_dump(exclude={"bind_dn", "bind_password"})
    return AdSettings(**{**fields, "auth": "kerberos", **changes})


def token_sids(connection: ldap3.Connection) -> set[str]:
    """The SIDs of the bound identity's token, which the DC shows on the rootDSE.

    Samba 4.17 has no WhoAmI extended operation (it answers protocolError), so this is the way to
    ask the DC who it thinks we are.
    """
    _, result, response, _ = connection.search("", "(objectClass=*)", ldap3.BASE, attributes=["tokenGroups"])
    assert result["result"] == 0, result
    return {format_sid(sid) for sid in response[0]["raw_attributes"]["tokenGroups"]}


def object_sid(ad_admin, dn: str) -> str:  # type: ignore[no-untyped-def]
    ad_admin.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectSid"])
    return format_sid(ad_admin.response[0]["raw_attributes"]["objectSid"][0])


def test_the_writer_binds_as_the_keytabs_principal(
    ad_settings: AdSettings, keytab: Path, ad_admin, measured: Callable[[str], None]
) -> None:
    settings = kerberos(ad_settings, keytab=keytab)
    administrator = object_sid(ad_admin, ad_settings.bind_dn or "")

    timings = []
    for _ in range(3):  # every connection, as after a reconnect, gets fresh credentials
        started = time.monotonic()
        connection = connect(settings)
        timings.append(time.monotonic() - started)
        try:
            sids = token_sids(connection)
        finally:
            close(connection)
        assert administrator in sids
        assert AUTHENTICATION_AUTHORITY_ASSERTED_IDENTITY in sids

    started = time.monotonic()
    simple = connect(ad_settings)
    measured(
        f"kerberos: connect + bind over LDAPS with a keytab {timings[0] * 1000:.0f} ms first (TGT),"
        f" then {min(timings[1:]) * 1000:.0f}-{max(timings[1:]) * 1000:.0f} ms;"
        f" simple bind {(time.monotonic() - started) * 1000:.0f} ms"
    )
    try:
        assert AUTHENTICATION_AUTHORITY_ASSERTED_IDENTITY not in token_sids(simple)
    finally:
        close(simple)


def test_kerberos_over_start_tls_and_with_the_principal_named(ad_settings: AdSettings, keytab: Path, ad_admin) -> None:
    settings = kerberos(ad_settings, url="ldap://127.0.0.1:389", start_tls=True, keytab=keytab,
                        kerberos_principal=PRINCIPAL)  # fmt: skip
    connection = connect(settings)
    try:
        assert connection.tls_started
        assert object_sid(ad_admin, ad_settings.bind_dn or "") in token_sids(connection)
    finally:
        close(connection)


def test_a_kerberos_writer_creates_and_reads_a_group(ad_settings: AdSettings, keytab: Path, test_ou: str, ad_admin):  # type: ignore[no-untyped-def]
    directory = Directory(kerberos(ad_settings, keytab=keytab))
    group_id = str(uuid.uuid4())
    state = DesiredGroup(
        group_id=group_id,
        anchor=anchor_of(group_id),
        state="present",
        container=test_ou,
        attributes={"cn": f"Krb_{group_id[-12:]}", "description": "by Kerberos", "groupType": UNIVERSAL_SECURITY_GROUP},
        create_only={"sAMAccountName": f"k{group_id[-12:]}"},
        members=[],
    )
    try:
        created = converge(directory, state, default_container=None, writer="test").result
        assert (created.action, created.status) == ("create", "success"), created
        found = directory.find_group(state.anchor, ["description"])
    finally:
        directory.close()

    assert found is not None and found.attributes["description"] == ("by Kerberos",)
    ad_admin.search(test_ou, f"(cn=Krb_{group_id[-12:]})", attributes=["description"])
    assert [e["attributes"]["description"] for e in ad_admin.response] == [["by Kerberos"]]


def test_a_missing_keytab_is_a_configuration_error(ad_settings: AdSettings, tmp_path: Path) -> None:
    with pytest.raises(BindRejected, match=r"ad\.keytab: cannot read .*missing\.keytab"):
        connect(kerberos(ad_settings, keytab=tmp_path / "missing.keytab"))


def test_a_keytab_with_a_stale_key_is_a_configuration_error(ad_settings: AdSettings, tmp_path: Path) -> None:
    stale = tmp_path / "stale.keytab"  # as after the account's password changed
    commands = f"addent -password -p {PRINCIPAL} -k 1 -e aes256-cts-hmac-sha1-96\nnot-the-password\nwkt {stale}\nq\n"
    subprocess.run(["ktutil"], input=commands, text=True, check=True, capture_output=True)

    with pytest.raises(BindRejected, match=r"no Kerberos ticket from ad\.keytab .*stale\.keytab.*Preauthentication"):
        connect(kerberos(ad_settings, keytab=stale))


def test_a_principal_not_in_the_keytab_is_a_configuration_error(ad_settings: AdSettings, keytab: Path) -> None:
    with pytest.raises(BindRejected, match=r"ad\.keytab .* for svc-nobody@E2AD\.TEST"):
        connect(kerberos(ad_settings, keytab=keytab, kerberos_principal="svc-nobody@E2AD.TEST"))


def test_without_a_keytab_an_empty_credential_cache_is_a_configuration_error(
    ad_settings: AdSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'empty-ccache'}")
    with pytest.raises(BindRejected, match=r"no Kerberos ticket from the credential cache"):
        connect(kerberos(ad_settings))


def test_a_dc_name_without_an_ldap_service_principal_is_a_configuration_error(
    ad_settings: AdSettings, keytab: Path
) -> None:
    # Plain LDAP, so only Kerberos looks at the name: the ticket is asked for ldap/DC9.e2ad.test.
    settings = kerberos(ad_settings, url="ldap://127.0.0.1:389", insecure=True, tls_server_name="DC9.e2ad.test",
                        keytab=keytab)  # fmt: skip
    with pytest.raises(BindRejected, match=r"Kerberos bind to .* as Kerberos principal .*Server not found"):
        connect(settings)


def test_an_unreachable_kdc_is_directory_unavailable(
    ad_settings: AdSettings, keytab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        conf = tmp_path / "krb5.conf"
        conf.write_text(
            f"[libdefaults]\n default_realm = E2AD.TEST\n[realms]\n E2AD.TEST = {{\n  kdc = tcp/127.0.0.1:{port}\n }}\n"
        )
        monkeypatch.setenv("KRB5_CONFIG", str(conf))
        # A copy: the tickets the other tests got with `keytab` are cached and need no KDC.
        copy = tmp_path / "copy.keytab"
        shutil.copyfile(keytab, copy)
        with pytest.raises(DirectoryUnavailable, match=r"Cannot contact any KDC for realm 'E2AD\.TEST'"):
            connect(kerberos(ad_settings, keytab=copy))


def test_without_gssapi_the_error_names_the_setting(
    ad_settings: AdSettings, keytab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gssapi", None)  # `import gssapi` raises ImportError
    with pytest.raises(BindRejected, match=r"ad\.auth is kerberos, but the gssapi package is not installed"):
        connect(kerberos(ad_settings, keytab=keytab))
