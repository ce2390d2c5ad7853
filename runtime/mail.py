"""The administrators' notification e-mail: composed as pure code, sent in the background with retries.

The deletion guard's caller hands a message to Mailer.notify, which returns at once: e-mail is
a side channel, and an SMTP server that is down, slow or misconfigured must never hold up or
fail provisioning. A failed send is logged in one line naming the setting at fault and retried
with backoff for up to an hour while the process runs; close() gives what is pending a short
grace period at shutdown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import ssl
from email.message import EmailMessage
from types import TracebackType

import aiosmtplib

from runtime.outages import Backoff, stopped_within
from schemas.config import EmailSettings

log = logging.getLogger(__name__)

SETTINGS = "notifications.email"
# A message not sent within this long after notify() is given up: a trip an hour old is better
# read in the log than delivered late, and a process must not collect messages without bound.
RETRY_FOR_SECONDS = 3600.0
RETRY_INITIAL_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
# How long close() waits for pending messages; each waiting one is tried once more at once.
GRACE_SECONDS = 5.0
# Trips are rare; this many unsent messages mean something else is wrong, and more are dropped.
MAX_PENDING = 100


def compose(
    settings: EmailSettings,
    subject: str,
    body: str,
    *,
    date: dt.datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The message From `settings.sender` To `settings.to`, plain text; no I/O (pure given date and message_id).

    A subject is one line: line breaks and runs of white space become single spaces (a header
    cannot hold a line break, and the text may come from tenant data such as group names).
    """
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message["Subject"] = " ".join(subject.split())
    message["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id or email.utils.make_msgid(domain=_domain(settings.sender))
    # RFC 3834: a machine's message; vacation responders and the like do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def tls_context(settings: EmailSettings) -> ssl.SSLContext | None:
    """The client TLS context for `settings.security`, None for `none`; OSError or ssl.SSLError for a bad ca_file.

    ssl.create_default_context verifies the certificate and the host name; with a ca_file only that CA is trusted.
    """
    if settings.security == "none":
        return None
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


def check_ca_file(settings: EmailSettings | None) -> list[str]:
    """A problem naming notifications.email.ca_file when it does not load; checked when the settings load."""
    if settings is None or settings.ca_file is None:
        return []
    try:
        tls_context(settings)
    except ssl.SSLError as exc:  # before OSError, its base class
        return [f"{SETTINGS}.ca_file: {settings.ca_file} holds no usable PEM certificate: {exc}"]
    except OSError as exc:
        return [f"{SETTINGS}.ca_file: cannot read {settings.ca_file}: {exc.strerror or exc}"]
    return []


class Mailer:
    """Sends notification e-mail in the background: notify() never blocks, never raises.

    Built at a stage's start from loaded settings (whose ca_file load_settings has checked); one
    background task per message, so a message that cannot be sent holds up no later one.
    """

    def __init__(
        self,
        settings: EmailSettings,
        *,
        retry_for_seconds: float = RETRY_FOR_SECONDS,
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.settings = settings
        self._tls = tls_context(settings)
        self._retry_for = retry_for_seconds
        self._retry = (retry_initial_seconds, retry_max_seconds)
        self._grace = grace_seconds
        self._pending: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    @property
    def pending(self) -> int:
        """Messages not yet sent nor given up."""
        return len(self._pending)

    def compose(self, subject: str, body: str) -> EmailMessage:
        return compose(self.settings, subject, body)

    def notify(self, subject: str, body: str) -> None:
        """Send a plain-text message to the administrators, in the background."""
        try:
            message = self.compose(subject, body)
        except Exception as exc:  # a body the e-mail package cannot encode: the caller must not fail for it
            log.error("notification e-mail %r not sent: cannot compose it: %r", subject, exc)
            return
        self.send(message)

    def send(self, message: EmailMessage) -> None:
        """Send a composed message in the background; must be called on the event loop's thread."""
        subject = message.get("Subject", "")
        if self._closing.is_set():
            log.error("notification e-mail %r not sent: e2ad is shutting down", subject)
            return
        if len(self._pending) >= MAX_PENDING:
            log.error("notification e-mail %r not sent: %d earlier ones are still waiting", subject, MAX_PENDING)
            return
        try:
            task = asyncio.get_running_loop().create_task(self._deliver(message, subject))
        except RuntimeError:  # no running loop: a programming error, but still not the caller's failure
            log.error("notification e-mail %r not sent: no event loop is running", subject)
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Give pending messages the grace period (each tried once more at once), then give up on the rest."""
        self._closing.set()
        if not self._pending:
            return
        pending = set(self._pending)
        _, unfinished = await asyncio.wait(pending, timeout=self._grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.error(
                "%d notification e-mail(s) to %s not sent: given up at shutdown after %s s",
                len(unfinished),
                _server(self.settings),
                f"{self._grace:g}",
            )

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def _deliver(self, message: EmailMessage, subject: str) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._retry_for
        backoff = Backoff(*self._retry)
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._send_once(message)
            except Exception as exc:  # whatever aiosmtplib, ssl or the socket raise: described, retried
                problem = describe_failure(self.settings, exc)
            else:
                log.info("notification e-mail %r sent to %s", subject, ", ".join(self.settings.to))
                return
            if self._closing.is_set():
                log.error("notification e-mail %r not sent, given up at shutdown: %s", subject, problem)
                return
            delay = min(backoff.next(), give_up_at - loop.time())
            if delay <= 0:
                log.error(
                    "notification e-mail %r not sent, given up after %d attempts in %s s: %s",
                    subject,
                    attempts,
                    f"{self._retry_for:g}",
                    problem,
                )
                return
            log.warning("notification e-mail %r not sent: %s; retrying in %s s", subject, problem, f"{delay:.3g}")
            await stopped_within(self._closing, delay)  # close() wakes it for one last attempt

    async def _send_once(self, message: EmailMessage) -> None:
        settings = self.settings
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=settings.security == "tls",
            # True: STARTTLS or fail, never a silent fallback to plain text; False: not even offered ones.
            start_tls=settings.security == "starttls",
            tls_context=self._tls,
            timeout=settings.timeout_seconds,
        )


def describe_failure(settings: EmailSettings, exc: BaseException) -> str:
    """What went wrong, naming the server and the setting to look at; never the password."""
    server = _server(settings)
    tls = _ssl_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        if "mismatch" in (tls.verify_message or ""):  # "Hostname mismatch", "IP address mismatch"
            setting = f"{SETTINGS}.smtp_host must be a name its certificate carries"
        else:
            setting = f"{SETTINGS}.ca_file" + ("" if settings.ca_file else " unset: the system's CAs")
        return f"the certificate of {server} is not trusted ({setting}): {tls.verify_message or tls}"
    if tls is not None:
        return f"TLS with {server} failed ({SETTINGS}.security {settings.security}, port {settings.port}): {tls}"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return f"no answer from {server} within {settings.timeout_seconds:g} s ({SETTINGS}.timeout_seconds): {exc}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"{server} refused the login as {settings.username} ({SETTINGS}.username, password): {_reply(exc)}"
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc) and settings.security == "starttls":
        return f"{server} does not offer STARTTLS ({SETTINGS}.security starttls; tls is SMTPS): {exc}"
    if isinstance(exc, aiosmtplib.SMTPException) and "AUTH" in str(exc) and settings.username is not None:
        return f"{server} offers no login ({SETTINGS}.username, security): {exc}"
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # SMTPUTF8: an address beyond ASCII
        return f"{server} cannot take these addresses ({SETTINGS}.from, to): {exc}"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        if exc.code == 530:  # "authentication required", or "must issue STARTTLS first"
            return f"{server} requires a login or TLS ({SETTINGS}.username, security): {_reply(exc)}"
        return f"{server} refused the sender {exc.sender} ({SETTINGS}.from): {_reply(exc)}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{r.recipient} ({_reply(r)})" for r in exc.recipients)
        return f"{server} refused the recipients ({SETTINGS}.to): {refused}"
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError):
        return f"cannot reach {server} ({SETTINGS}.smtp_host, smtp_port): {exc}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{server} answered {_reply(exc)}"
    return f"sending through {server} failed: {type(exc).__name__}: {exc}"


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error in an exception's chain: aiosmtplib wraps a failed implicit-TLS handshake in SMTPConnectError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}"


def _server(settings: EmailSettings) -> str:
    return f"SMTP server {settings.smtp_host}:{settings.port}"


def _domain(sender: str) -> str | None:
    """The sender's domain for the Message-ID: the local host name would tell recipients little."""
    return email.utils.parseaddr(sender)[1].rpartition("@")[2] or None
