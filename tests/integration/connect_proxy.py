"""A real HTTP CONNECT proxy on loopback, as a corporate proxy is seen by e2ad's Graph clients.

It tunnels bytes and never sees inside TLS; it records each tunnel's target, so a test can tell
that the token request and the Graph reads really went through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket


class ConnectProxy:
    """CONNECT host:port → 200 and a byte pipe; with credentials, 407 unless Proxy-Authorization carries them."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.tunnels: list[str] = []  # the host:port of every tunnel opened, in order
        self.refused: list[str] = []  # request lines answered with an error
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        userinfo = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def tunnels_to(self, url: str) -> int:
        """How many tunnels went to the host:port of an https URL."""
        authority = url.split("://", 1)[1].split("/", 1)[0]
        return self.tunnels.count(authority if ":" in authority else f"{authority}:443")

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, family=socket.AF_INET)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._open:
            writer.transport.abort()
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            self._open.discard(writer)
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        if method != "CONNECT":
            await self._refuse(writer, request_line, "405 Method Not Allowed")
            return
        if self.credentials and headers.get("proxy-authorization") != _basic(*self.credentials):
            challenge = '407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="e2ad"'
            await self._refuse(writer, request_line, challenge)
            return
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except (OSError, ValueError):
            await self._refuse(writer, request_line, "502 Bad Gateway")
            return
        self.tunnels.append(target)
        self._open.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}

    async def _refuse(self, writer: asyncio.StreamWriter, request_line: str, status: str) -> None:
        self.refused.append(request_line)
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        self._open.discard(writer)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.close()
