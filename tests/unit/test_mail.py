"""The notification e-mail: its settings, and runtime.mail against a real SMTP server (aiosmtpd on loopback).

The servers run in aiosmtpd's own thread and loop, so the test's loop stays free for the Mailer's
background sends. Retry delays are shortened to tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from e2ad.settings import load_settings
from harness.standin.tls import make_test_ca
from runtime.config import ConfigError
from runtime.mail import Mailer, compose
from schemas.config import EmailSettings

PASSWORD = "s3cret-PLANTED-91c2"
FAST = {"retry_initial_seconds": 0.05, "retry_max_seconds": 0.2, "grace_seconds": 0.5}


def email_settings(port: int, **fields: Any) -> EmailSettings:
    return EmailSettings.model_validate(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "from": "e2ad <e2ad@corp.example>",
            "to": ["identity-admins@corp.example", "oncall@corp.example"],
            "timeout_seconds": 2,
            **fields,
        }
    )


# -- settings ------------------------------------------------------------------------------------

MINIMAL = {"smtp_host": "smtp.corp.example", "from": "e2ad@corp.example", "to": ["admins@corp.example"]}


def load(tmp_path: Path, email_section: dict[str, Any] | None = None, environ: dict[str, str] | None = None):
    path = tmp_path / "e2ad.yaml"
    path.write_text(yaml.safe_dump({"notifications": {"email": email_section}} if email_section else {}))
    return load_settings(path, environ=environ or {})


def load_error(tmp_path: Path, email_section: dict[str, Any] | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, email_section, environ)
    return str(caught.value)


def test_without_the_section_there_is_no_email(tmp_path: Path) -> None:
    assert load(tmp_path).notifications.email is None


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_the_port_defaults_by_security(tmp_path: Path, security: str, port: int) -> None:
    email_ = load(tmp_path, MINIMAL | {"security": security}).notifications.email
    assert email_ is not None and email_.port == port
    email_ = load(tmp_path, MINIMAL | {"security": security, "smtp_port": 2525}).notifications.email
    assert email_ is not None and email_.port == 2525


def test_one_recipient_may_be_given_as_text(tmp_path: Path) -> None:
    email_ = load(tmp_path, MINIMAL | {"to": "admins@corp.example"}).notifications.email
    assert email_ is not None and email_.to == ["admins@corp.example"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"from": None}, "notifications.email.from: Input should be a valid string"),
        ({"from": "e2ad"}, "notifications.email.from: Value error, 'e2ad' is not one e-mail address"),
        ({"from": "a@corp.example, b@corp.example"}, "notifications.email.from: Value error"),
        ({"from": "a@corp.example\r\nBcc: x@evil.example"}, "notifications.email.from: Value error"),
        ({"to": []}, "notifications.email.to: List should have at least 1 item"),
        ({"to": ["a@corp.example", "nobody"]}, "notifications.email.to[1]: Value error, 'nobody' is not one"),
        ({"sender": "e2ad@corp.example"}, "notifications.email.sender: Extra inputs are not permitted"),
        ({"security": "ssl"}, "notifications.email.security: Input should be 'starttls', 'tls' or 'none'"),
        ({"smtp_port": 0}, "notifications.email.smtp_port: Input should be greater than or equal to 1"),
        ({"timeout_seconds": 0}, "notifications.email.timeout_seconds: Input should be greater than 0"),
        ({"username": "e2ad"}, "notifications.email.password (or password_file) is required with"),
        ({"password": PASSWORD}, "notifications.email.username is required with notifications.email.password"),
        (
            {"security": "none", "username": "e2ad", "password": PASSWORD},
            "notifications.email.username with notifications.email.security none sends the password unencrypted",
        ),
        ({"security": "none", "ca_file": "/etc/ssl/ca.pem"}, "notifications.email.ca_file needs"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    error = load_error(tmp_path, MINIMAL | fields)
    assert message in error
    assert PASSWORD not in error


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"to": ["admins@corp.example"]})
    assert "notifications.email.smtp_host: Field required" in error
    assert "notifications.email.from: Field required" in error


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_a_login_without_tls_is_allowed_to_a_relay_on_this_host(tmp_path: Path, host: str) -> None:
    fields = {"smtp_host": host, "security": "none", "username": "e2ad", "password": PASSWORD}
    assert load(tmp_path, MINIMAL | fields).notifications.email is not None


def test_the_whole_section_from_the_environment_and_the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text(f"{PASSWORD}\n")
    environ = {
        "E2AD_NOTIFICATIONS__EMAIL__SMTP_HOST": "smtp.corp.example",
        "E2AD_NOTIFICATIONS__EMAIL__SECURITY": "tls",
        "E2AD_NOTIFICATIONS__EMAIL__FROM": "e2ad <e2ad@corp.example>",
        "E2AD_NOTIFICATIONS__EMAIL__TO": '["a@corp.example", "b@corp.example"]',
        "E2AD_NOTIFICATIONS__EMAIL__USERNAME": "e2ad",
        "E2AD_NOTIFICATIONS__EMAIL__PASSWORD_FILE": str(secret),
    }
    email_ = load(tmp_path, environ=environ).notifications.email
    assert email_ is not None
    assert (email_.smtp_host, email_.port, email_.sender) == ("smtp.corp.example", 465, "e2ad <e2ad@corp.example>")
    assert email_.to == ["a@corp.example", "b@corp.example"]
    assert email_.password is not None and email_.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(email_)


def test_the_password_file_in_yaml_overrides_nothing_else(tmp_path: Path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text(PASSWORD)
    settings = load(tmp_path, MINIMAL | {"username": "e2ad", "password_file": str(secret)})
    assert settings.notifications.email is not None
    assert settings.notifications.email.password is not None
    assert settings.notifications.email.password.get_secret_value() == PASSWORD


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL | {"username": "e2ad", "password_file": str(tmp_path / "missing")})
    assert "notifications.email.password_file: cannot read" in error


def test_a_binary_password_file_is_a_clean_error(tmp_path: Path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_bytes(b"\xff\xfe" + PASSWORD.encode())
    error = load_error(tmp_path, MINIMAL | {"username": "e2ad", "password_file": str(secret)})
    assert "notifications.email.password_file: cannot read" in error and "not UTF-8 text" in error
    assert PASSWORD not in error


def test_a_misspelt_variable_is_named_with_the_right_one(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL, {"E2AD_NOTIFICATIONS__EMAIL__FORM": "x@corp.example"})
    assert "E2AD_NOTIFICATIONS__EMAIL__FORM names no setting; did you mean E2AD_NOTIFICATIONS__EMAIL__FROM" in error
    error = load_error(tmp_path, MINIMAL, {"E2AD_NOTIFICATIONS__EMAIL__PASSWORD_FLE": PASSWORD})
    assert "did you mean E2AD_NOTIFICATIONS__EMAIL__PASSWORD_FILE" in error
    assert PASSWORD not in error


def test_a_misspelt_yaml_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL | {"smtp_hots": "x"})
    assert (
        "notifications.email.smtp_hots: Extra inputs are not permitted; did you mean notifications.email.smtp_host?"
        in error
    )


def test_a_ca_file_that_does_not_load_stops_loading(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL | {"ca_file": str(tmp_path / "missing.pem")})
    assert "notifications.email.ca_file: cannot read" in error
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert "notifications.email.ca_file: " in load_error(tmp_path, MINIMAL | {"ca_file": str(garbage)})


# -- compose -------------------------------------------------------------------------------------


def test_compose_addresses_the_administrators() -> None:
    message = compose(email_settings(25), "Deletion guard\r\n  tripped", "Deleting 120 of 400 groups.\n")
    assert message["From"] == "e2ad <e2ad@corp.example>"
    assert message["To"] == "identity-admins@corp.example, oncall@corp.example"
    assert message["Subject"] == "Deletion guard tripped"  # one line, whatever the caller passed
    assert message["Message-ID"].endswith("@corp.example>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]
    assert message.get_content() == "Deleting 120 of 400 groups.\n"


# -- sending against aiosmtpd --------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


class Inbox:
    """An aiosmtpd handler that keeps what arrives, and whether it came over TLS and logged in."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), message, tls, login))
        return "250 OK"


class Accounts:
    """An aiosmtpd authenticator with one account whose password a test may change."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.attempts = 0

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        self.attempts += 1
        ok = isinstance(data, LoginPassword) and data == LoginPassword(b"e2ad", self.password.encode())
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def smtp_server(inbox: Inbox, port: int | None = None, **kwargs: Any) -> Iterator[Controller]:
    controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port(), **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@dataclass
class Authority:
    ca_file: Path
    server: ssl.SSLContext
    other_ca_file: Path  # a CA that did not issue the server's certificate


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    ca_file, server = make_test_ca(tmp_path_factory.mktemp("ca"))
    other, _ = make_test_ca(tmp_path_factory.mktemp("other-ca"))
    return Authority(ca_file, server, other)


@pytest.fixture
def mail_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="runtime.mail")
    return caplog


async def arrived(inbox: Inbox, count: int = 1, within: float = 5.0) -> list[Received]:
    deadline = time.monotonic() + within
    while len(inbox.received) < count:
        assert time.monotonic() < deadline, f"{len(inbox.received)} of {count} messages arrived in {within} s"
        await asyncio.sleep(0.01)
    return inbox.received


async def logged(caplog: pytest.LogCaptureFixture, text: str, within: float = 5.0) -> logging.LogRecord:
    deadline = time.monotonic() + within
    while True:
        for record in caplog.records:
            if record.name == "runtime.mail" and text in record.getMessage():
                return record
        assert time.monotonic() < deadline, f"no log line with {text!r} in {within} s:\n{caplog.text}"
        await asyncio.sleep(0.01)


async def test_a_plain_message_arrives_as_composed(mail_log: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as server:
        async with Mailer(email_settings(server.port, security="none"), **FAST) as mailer:
            mailer.notify("Deletion guard tripped", "120 of 400 groups would be deleted.\n")
            [received] = await arrived(inbox)
    assert received.sender == "e2ad@corp.example"
    assert received.recipients == ["identity-admins@corp.example", "oncall@corp.example"]
    assert received.message["From"] == "e2ad <e2ad@corp.example>"
    assert received.message["To"] == "identity-admins@corp.example, oncall@corp.example"
    assert received.message["Subject"] == "Deletion guard tripped"
    assert (
        received.message.get_content().replace("\r\n", "\n") == "120 of 400 groups would be deleted.\n"
    )  # CRLF on the wire
    assert not received.tls
    await logged(mail_log, "notification e-mail 'Deletion guard tripped' sent to identity-admins@corp.example")


async def test_starttls_is_used_and_the_certificate_verified(ca: Authority) -> None:
    inbox = Inbox()
    with smtp_server(inbox, tls_context=ca.server, require_starttls=True) as server:
        async with Mailer(email_settings(server.port, ca_file=str(ca.ca_file)), **FAST) as mailer:
            mailer.notify("over STARTTLS", "body\n")
            [received] = await arrived(inbox)
    assert received.tls
    assert received.message["Subject"] == "over STARTTLS"


async def test_implicit_tls(ca: Authority) -> None:
    inbox = Inbox()
    with smtp_server(inbox, ssl_context=ca.server) as server:
        async with Mailer(email_settings(server.port, security="tls", ca_file=str(ca.ca_file)), **FAST) as mailer:
            mailer.notify("over SMTPS", "body\n")
            [received] = await arrived(inbox)
    assert received.tls


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("trusted", ["system", "other CA"])
async def test_an_untrusted_certificate_is_refused(
    ca: Authority, mail_log: pytest.LogCaptureFixture, security: str, trusted: str
) -> None:
    inbox = Inbox()
    kwargs = {"tls_context": ca.server} if security == "starttls" else {"ssl_context": ca.server}
    ca_file = None if trusted == "system" else str(ca.other_ca_file)
    with smtp_server(inbox, **kwargs) as server:
        mailer = Mailer(email_settings(server.port, security=security, ca_file=ca_file), **FAST)
        mailer.notify("untrusted", "body\n")
        record = await logged(mail_log, "is not trusted (notifications.email.ca_file")
        await mailer.close()
    assert record.levelno == logging.WARNING
    assert f"SMTP server 127.0.0.1:{server.port}" in record.getMessage()
    # OpenSSL's reason: no issuer known (the system's CAs), or one of the same name that did not sign it.
    assert record.getMessage().endswith(
        ("unable to get local issuer certificate; retrying in 0.05 s", "signature failure; retrying in 0.05 s")
    )
    assert inbox.received == []


async def test_a_certificate_for_another_host_is_refused(ca: Authority, mail_log: pytest.LogCaptureFixture) -> None:
    # The test certificate names 127.0.0.1 and localhost; 127.0.0.2 is this host as well, under another address.
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.2", port=port, ssl_context=ca.server)
    try:
        controller.start()
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    try:
        settings = email_settings(port, smtp_host="127.0.0.2", security="tls", ca_file=str(ca.ca_file))
        mailer = Mailer(settings, **FAST)
        mailer.notify("wrong name", "body\n")
        record = await logged(mail_log, "notifications.email.smtp_host must be a name its certificate carries")
        await mailer.close()
    finally:
        controller.stop()
    assert "mismatch" in record.getMessage()
    assert inbox.received == []


async def test_starttls_missing_on_the_server_is_not_skipped(mail_log: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as server:  # no tls_context: the server offers no STARTTLS
        mailer = Mailer(email_settings(server.port), **FAST)
        mailer.notify("no STARTTLS", "body\n")
        record = await logged(mail_log, "notifications.email.security")
        await mailer.close()
    assert "STARTTLS" in record.getMessage()
    assert inbox.received == []


async def test_a_wrong_password_is_logged_and_retried_until_the_server_accepts(
    ca: Authority, mail_log: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    accounts = Accounts(password="the-old-one")
    tls = {"tls_context": ca.server, "require_starttls": True}
    with smtp_server(inbox, authenticator=accounts, auth_required=True, **tls) as server:
        settings = email_settings(server.port, ca_file=str(ca.ca_file), username="e2ad", password=PASSWORD)
        async with Mailer(settings, **FAST) as mailer:
            mailer.notify("login", "body\n")
            record = await logged(mail_log, "refused the login as e2ad (notifications.email.username, password): 535")
            await logged(mail_log, "retrying in")
            accounts.password = PASSWORD  # the administrator fixes the account
            [received] = await arrived(inbox)
    assert accounts.attempts >= 2
    assert received.login == "e2ad" and received.tls
    assert record.levelno == logging.WARNING
    assert PASSWORD not in mail_log.text


async def test_no_login_where_the_server_requires_one_names_the_username(
    ca: Authority, mail_log: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    tls = {"tls_context": ca.server, "require_starttls": True}
    with smtp_server(inbox, authenticator=Accounts(PASSWORD), auth_required=True, **tls) as server:
        mailer = Mailer(email_settings(server.port, ca_file=str(ca.ca_file)), **FAST)
        mailer.notify("no login", "body\n")
        await logged(mail_log, "requires a login or TLS (notifications.email.username, security): 530")
        await mailer.close()


async def test_a_server_that_is_down_gets_the_message_once_it_is_up(mail_log: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    port = free_port()
    mailer = Mailer(email_settings(port, security="none"), **FAST)
    started = time.monotonic()
    mailer.notify("while down", "body\n")
    assert time.monotonic() - started < 0.05  # returned at once, nothing sent yet
    assert mailer.pending == 1
    record = await logged(mail_log, f"cannot reach SMTP server 127.0.0.1:{port} (notifications.email.smtp_host")
    assert "retrying in" in record.getMessage()
    with smtp_server(inbox, port=port):
        [received] = await arrived(inbox)
        await mailer.close()
    assert received.message["Subject"] == "while down"
    assert mailer.pending == 0


async def test_a_silent_server_is_a_timeout_naming_the_setting(mail_log: pytest.LogCaptureFixture) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never a greeting
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        mailer = Mailer(email_settings(port, security="none", timeout_seconds=0.2), **FAST)
        mailer.notify("silence", "body\n")
        await logged(mail_log, "within 0.2 s (notifications.email.timeout_seconds)")
        await mailer.close()


async def test_a_message_is_given_up_after_the_retry_bound(mail_log: pytest.LogCaptureFixture) -> None:
    mailer = Mailer(email_settings(free_port(), security="none"), **(FAST | {"retry_for_seconds": 0.3}))
    mailer.notify("bounded", "body\n")
    record = await logged(mail_log, "notification e-mail 'bounded' not sent, given up after")
    assert record.levelno == logging.ERROR
    assert "in 0.3 s: cannot reach" in record.getMessage()
    await asyncio.sleep(0)
    assert mailer.pending == 0


async def test_close_with_a_failing_send_returns_within_the_grace_period(mail_log: pytest.LogCaptureFixture) -> None:
    # The backoff sleeps longer than the grace period: close() wakes the send for one last attempt.
    mailer = Mailer(
        email_settings(free_port(), security="none"), retry_initial_seconds=30, retry_max_seconds=30, grace_seconds=0.5
    )
    mailer.notify("at shutdown", "body\n")
    await logged(mail_log, "retrying in 30 s")
    started = time.monotonic()
    await mailer.close()
    assert time.monotonic() - started < 0.5 + 0.3
    await logged(mail_log, "'at shutdown' not sent, given up at shutdown: cannot reach")
    assert mailer.pending == 0
    mailer.notify("after close", "body\n")
    await logged(mail_log, "'after close' not sent: e2ad is shutting down")


async def test_close_cancels_an_attempt_that_outlasts_the_grace_period(mail_log: pytest.LogCaptureFixture) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        settings = email_settings(server.sockets[0].getsockname()[1], security="none", timeout_seconds=30)
        mailer = Mailer(settings, **(FAST | {"grace_seconds": 0.2}))
        mailer.notify("slow", "body\n")
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await mailer.close()
        assert time.monotonic() - started < 0.2 + 0.3
    record = await logged(mail_log, "1 notification e-mail(s) to SMTP server 127.0.0.1")
    assert "given up at shutdown after 0.2 s" in record.getMessage()


def test_notify_without_an_event_loop_logs_and_returns(mail_log: pytest.LogCaptureFixture) -> None:
    mailer = Mailer(email_settings(25, security="none"))
    mailer.notify("no loop", "body\n")
    assert "'no loop' not sent: no event loop is running" in mail_log.text


async def test_a_server_that_offers_no_login_names_the_username(mail_log: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as server:  # no authenticator: no AUTH offered
        settings = email_settings(server.port, security="none", username="e2ad", password=PASSWORD)
        mailer = Mailer(settings, **FAST)
        mailer.notify("no AUTH", "body\n")
        await logged(mail_log, "offers no login (notifications.email.username, security)")
        await mailer.close()
    assert inbox.received == []
    assert PASSWORD not in mail_log.text


class Refusing(Inbox):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return "550 5.1.1 no such mailbox"


async def test_refused_recipients_are_named(mail_log: pytest.LogCaptureFixture) -> None:
    with smtp_server(Refusing()) as server:
        mailer = Mailer(email_settings(server.port, security="none"), **FAST)
        mailer.notify("nobody home", "body\n")
        record = await logged(mail_log, "refused the recipients (notifications.email.to)")
        await mailer.close()
    assert "identity-admins@corp.example (550 5.1.1 no such mailbox)" in record.getMessage()
