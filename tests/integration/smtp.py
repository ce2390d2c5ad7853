"""A real SMTP server for the integration tests: aiosmtpd on loopback, keeping what it receives."""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from harness.services import free_port


class Inbox:
    """An aiosmtpd handler that keeps the messages that arrive (it runs in aiosmtpd's own thread)."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 OK"


@contextlib.contextmanager
def running_inbox() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server (no TLS, no AUTH) on 127.0.0.1: its inbox and its port."""
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
