"""Helpers for the Marti tests (no tests here): a server with the Marti API on free loopback ports,
and a blocking HTTP client (the standard library's `http.client`, not our code) run off the loop.

Requests are built the way ATAK and TAK tools send them (see each test); responses are read with
`http.client`, `json`, `xml.etree` and `cryptography`, as those clients parse them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kestrel import pki as certs
from kestrel.marti.config import MartiConfig
from kestrel.marti.service import Marti
from kestrel.marti.shell import ShellLimits
from kestrel.server.app import Server
from kestrel.server.config import ListenerConfig
from tests.test_server_support import make_config

BOUNDARY = "----AtakBoundary7MA4YWxkTrZu0gW"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(port: int, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            *, tls: ssl.SSLContext | None = None, timeout: float = 20.0) -> Reply:
    conn: http.client.HTTPConnection
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


async def arequest(*args: Any, **kw: Any) -> Reply:
    return await asyncio.to_thread(request, *args, **kw)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart(data: bytes, filename: str, part: str = "assetfile",
              content_type: str = "application/x-zip-compressed") -> tuple[bytes, str]:
    """One file part, as ATAK's HTTP client (MultipartEntityBuilder.addBinaryBody) writes it."""
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n\r\n").encode()
    body += data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def ca_context(data: Path, client: str | None = None) -> ssl.SSLContext:
    """What a TAK client trusts: our CA (and presents `client`'s certificate when given)."""
    return certs.client_ssl_context(data, client, check_hostname=False)


@dataclass
class Running:
    server: Server
    marti: Marti
    data: Path

    @property
    def http(self) -> int:
        return self.marti.ports["http"]

    @property
    def https(self) -> int:
        return self.marti.ports["https"]

    @property
    def enroll(self) -> int:
        return self.marti.ports["enroll"]

    @property
    def tcp(self) -> int:
        return self.server.ports["tcp"]


@contextlib.asynccontextmanager
async def marti_running(data: Path, *, tls: bool = False, limits: ShellLimits | None = None,
                        **mkw: Any) -> AsyncIterator[Running]:
    listeners = [ListenerConfig("tcp", "tcp", "127.0.0.1", 0)]
    ports = {"http": 0}
    if tls:
        if not certs.paths(data).has_server():
            certs.init(data)
        listeners.append(ListenerConfig("tls", "tls", "127.0.0.1", 0))
        ports.update(https=0, enroll=0)
    cfg = make_config(data, *listeners)
    mcfg = MartiConfig(ports=ports, required=set(ports), **mkw)
    server = Server(cfg)
    marti = Marti(mcfg, limits)
    server.extensions.append(marti)
    await server.start()
    try:
        yield Running(server, marti, data)
    finally:
        await server.stop()
