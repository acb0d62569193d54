"""Listening sockets: plain TCP, TLS with client certificates, UDP datagrams.

TLS contexts are built by `kestrel.pki.tls` (server_context); this module only listens.

TLS has its own small accept loop: each accepted socket gets its handshake through
`loop.connect_accepted_socket(ssl=…)` in its own task, so a refused handshake (no certificate,
wrong CA, timeout) is logged as `client.tls_refused` and costs only that socket. (asyncio's
`start_server(ssl=…)` drops those silently; `StreamWriter.start_tls` races with the first bytes
under uvloop.) Worst case per pending handshake: one task and one socket until
`handshake_timeout`. The connection caps are checked at accept, before the handshake (`admit`,
with this listener's pending handshakes counted), so a client over its cap costs one accept and
one close, not a TLS handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from kestrel.server import logs

OnClient = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# admit(address, peer, pending handshakes from that address, pending handshakes in all) -> refused?
Admit = Callable[[str, str, int, int], bool]
BACKLOG = 1024


ASYNCIO_TLS_READ_BUFFER = 32 * 1024


def tune_asyncio_tls() -> None:
    """Shrink asyncio's per-connection TLS read buffer from 256 KiB to 32 KiB.

    asyncio's `sslproto.SSLProtocol` (3.11+) allocates and zero-fills `max_size` bytes for every TLS
    connection: 1,000 idle TLS clients cost ~300 MB. `max_size` only bounds how much one read takes
    (a TLS record carries at most 16 KiB), so 32 KiB loses nothing; measured in docs/server.md.
    uvloop has its own TLS layer and is not affected.
    """
    import asyncio.sslproto as sslproto

    proto = getattr(sslproto, "SSLProtocol", None)
    if proto is not None and getattr(proto, "max_size", 0) > ASYNCIO_TLS_READ_BUFFER:
        proto.max_size = ASYNCIO_TLS_READ_BUFFER


class Listener:
    """A bound listening socket; `port` is the real port (the config may say 0)."""

    port: int

    def close(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        return None


class TcpListener(Listener):
    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    @classmethod
    async def start(cls, host: str, port: int, on_client: OnClient, limit: int, reuse_port: bool = False) -> TcpListener:
        srv = await asyncio.start_server(on_client, host, port, limit=limit, backlog=BACKLOG,
                                         reuse_port=reuse_port or None)
        return cls(srv)

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)


class TlsListener(Listener):
    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, on_client: OnClient, *, name: str,
                 limit: int, handshake_timeout: float, admit: Admit | None = None) -> None:
        self._sock, self._ctx, self._on_client = sock, ctx, on_client
        self.name, self._limit, self._timeout = name, limit, handshake_timeout
        self._admit = admit
        self._pending: dict[str, int] = {}  # address -> handshakes in progress
        self.port = sock.getsockname()[1]
        self.refused = 0
        self._handshakes: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._accept_loop(), name=f"kestrel-accept-{name}")

    @classmethod
    async def start(cls, host: str, port: int, ctx: ssl.SSLContext, on_client: OnClient, *, name: str,
                    limit: int, handshake_timeout: float, reuse_port: bool = False,
                    admit: Admit | None = None) -> TlsListener:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        tune_asyncio_tls()
        return cls(sock, ctx, on_client, name=name, limit=limit, handshake_timeout=handshake_timeout, admit=admit)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # e.g. out of file descriptors: say so, back off, go on
                logs.warning("listener.accept_error", name=self.name, reason=exc.strerror or repr(exc))
                await asyncio.sleep(0.5)
                continue
            address = str(addr[0]) if isinstance(addr, tuple) else str(addr)
            if self._admit is not None and self._admit(address, _peer(addr), self._pending.get(address, 0),
                                                       sum(self._pending.values())):
                _reset(conn)  # refused before any TLS byte: costs an accept and a close
                continue
            self._pending[address] = self._pending.get(address, 0) + 1
            t = asyncio.create_task(self._handshake(conn, addr))
            self._handshakes.add(t)
            t.add_done_callback(self._handshakes.discard)

    def _done(self, address: str) -> None:
        left = self._pending[address] = self._pending.get(address, 1) - 1
        if left <= 0:
            del self._pending[address]

    async def _handshake(self, conn: socket.socket, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self._limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        address = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._ctx, ssl_handshake_timeout=self._timeout
            )
        except ssl.SSLError as exc:  # no certificate, wrong CA, bad protocol: worth a warning
            self.refused += 1
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
            logs.warning("client.tls_refused", listener=self.name, peer=_peer(addr), reason=reason)
            conn.close()
            return
        except (ConnectionError, TimeoutError, OSError) as exc:  # hung up or stalled (port probes)
            self.refused += 1
            logs.info("client.tls_abandoned", listener=self.name, peer=_peer(addr), reason=type(exc).__name__)
            conn.close()
            return
        finally:
            self._done(address)  # from here on the session counts (no await before it is registered)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._on_client(reader, writer)

    def close(self) -> None:
        self._task.cancel()
        for t in list(self._handshakes):
            t.cancel()
        self._sock.close()


def _peer(addr: Any) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


def _reset(conn: socket.socket) -> None:
    """Close an accepted socket at once with a reset (SO_LINGER 0): no TIME_WAIT kept for it."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class UdpListener(Listener, asyncio.DatagramProtocol):
    """Decodes each datagram with `decode` and hands the event to `deliver`; bad ones are skipped."""

    def __init__(self, name: str, decode: Callable[[bytes], Any], deliver: Callable[[Any], object],
                 on_error: Callable[[], object] | None = None) -> None:
        self.name, self._decode, self._deliver, self._on_error = name, decode, deliver, on_error
        self.received = self.errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(cls, host: str, port: int, name: str, decode: Callable[[bytes], Any],
                    deliver: Callable[[Any], object], on_error: Callable[[], object] | None = None,
                    reuse_port: bool = False) -> UdpListener:
        proto = cls(name, decode, deliver, on_error)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: proto, local_addr=(host, port), reuse_port=reuse_port or None
        )
        proto._transport = transport
        proto.port = transport.get_extra_info("sockname")[1]
        return proto

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event = self._decode(data)
        except Exception as exc:  # CotError, or whatever a hostile datagram provokes: skip it
            self.errors += 1
            if self._on_error is not None:
                self._on_error()
            if self.errors <= 10 or self.errors % 1000 == 0:
                logs.warning(
                    "udp.bad_input", listener=self.name, peer=f"{addr[0]}:{addr[1]}",
                    reason=str(exc) or type(exc).__name__, errors=self.errors, head=logs.preview(data),
                )
            return
        self.received += 1
        self._deliver(event)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
