"""A TLS terminator in front of the embedded broker, for the tests of kafka.security_protocol SSL.

noida-db has no TLS listener and no advertised-listener option: its Metadata and FindCoordinator
responses name its own plaintext port, so a client that bootstrapped through TLS would go there
next. The terminator rewrites that address in every response to its own. Every Kafka response
is a size-prefixed frame, and a broker address is a host string followed by its int32 port, so
`127.0.0.1` + <broker port> becomes `127.0.0.1` + <terminator port>: same length, the frame stays
valid. (A record value holding those 13 bytes would be rewritten too; the tests' records do not.)

It runs on its own event loop in its own thread, so it keeps serving while a test blocks its
loop, e.g. in stop_stage() waiting for a stage that says goodbye to the broker through it.
For mutual TLS, give it a context that requires client certificates (make_client_certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import struct
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.standin.tls import certificate_builder

HOST = "127.0.0.1"


def make_client_certificate(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA for client certificates and a client certificate it signed: (ca.pem, client.pem, client.key).

    The key is a file of its own, as kafka.ssl_key_file takes it. (harness.standin.tls makes server
    certificates only: a TLS server refuses a client certificate without the clientAuth usage.)
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2ad Kafka client test CA")])

    ca = (
        certificate_builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client = (
        certificate_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key.public_key(), now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "client-ca.pem", directory / "client.pem", directory / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class KafkaTlsTerminator:
    def __init__(self, broker_port: int, server_context: ssl.SSLContext) -> None:
        self.broker_port = broker_port
        self.port = 0
        self.connections = 0  # TLS sessions that reached the broker
        self.client_names: set[str] = set()  # common names of the client certificates presented
        self._context = server_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-tls", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def __enter__(self) -> KafkaTlsTerminator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0, family=socket.AF_INET, ssl=self._context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if peer := writer.get_extra_info("peercert"):
                self.client_names |= {value for rdn in peer["subject"] for key, value in rdn if key == "commonName"}
            up_reader, up_writer = await asyncio.open_connection(HOST, self.broker_port)
            self.connections += 1
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                await asyncio.gather(self._requests(reader, up_writer), self._responses(up_reader, writer))
            up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _requests(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        dst.close()

    async def _responses(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        advertised = HOST.encode() + struct.pack(">i", self.broker_port)
        ours = HOST.encode() + struct.pack(">i", self.port)
        while True:
            size = await src.readexactly(4)
            frame = await src.readexactly(struct.unpack(">i", size)[0])
            dst.write(size + frame.replace(advertised, ours))
            await dst.drain()
