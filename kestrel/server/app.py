"""The server: listeners (TCP, TLS with client certificates, UDP), the router, the store.

Tasks: one accept loop per listener (asyncio's), a reader and a writer task per streaming client,
one housekeeping task (store flush + expiry every `store_flush_seconds`). Everything runs on one
event loop thread; the router is plain synchronous code in between.

    server = Server(config); await server.start(); server.ports["tcp"]; ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

from kestrel.cot.connection import decode_datagram, encode_for
from kestrel.cot.xml import parse_event
from kestrel.server import logs
from kestrel.server.config import ListenerConfig, ServerConfig, is_loopback
from kestrel.server.router import Retained, Router
from kestrel.server.session import Session
from kestrel.server.store import Store

DB_NAME = "kestrel.db"


def tls_context(config: ServerConfig) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate signed by our CA."""
    ca, cert, key = config.cert_paths()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(ca))
    return ctx


def common_name(peercert: dict[str, Any] | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Server, listener: ListenerConfig) -> None:
        self.server, self.listener = server, listener
        self.groups = server.config.groups_for(listener)
        self.received = self.errors = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event = decode_datagram(data)
        except Exception as exc:  # CotError or anything a hostile datagram provokes: skip it
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                logs.warning(
                    "udp.bad_input", listener=self.listener.name, peer=f"{addr[0]}:{addr[1]}",
                    reason=str(exc) or type(exc).__name__, errors=self.errors, head=logs.preview(data),
                )
            return
        self.received += 1
        self.server.router.route(event, None, self.groups)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.router = Router(encode_for, None, config.limits.max_retained)
        self.sessions: set[Session] = set()
        self.ports: dict[str, int] = {}
        self.listening: list[tuple[ListenerConfig, int]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.data_dir / DB_NAME)
        self.router._store = self.store
        self._restore()
        try:
            for li in cfg.listeners:
                await self._listen(li)
        except BaseException:
            await self.stop()
            raise
        self._housekeeping = asyncio.create_task(self._housekeep(), name="kestrel-housekeeping")

    def _restore(self) -> None:
        assert self.store is not None
        rows = self.store.load(int(time.time() * 1000))
        bad = 0
        for row in rows:
            try:
                event = parse_event(row.xml)
            except Exception:
                bad += 1
                self.store.delete(row.uid)
                continue
            self.router.restore(Retained(event, row.groups))
        logs.info("store.open", path=self.store.path, retained=len(rows) - bad, unreadable=bad)

    async def _listen(self, li: ListenerConfig) -> None:
        if not is_loopback(li.host):
            note = "plain TCP: no authentication" if li.kind in ("tcp", "udp") else None
            logs.warning("listener.exposed", name=li.name, host=li.host, note=note)
        if li.kind == "udp":
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self, li), local_addr=(li.host, li.port)
            )
            self._udp.append(transport)
            port = transport.get_extra_info("sockname")[1]
        else:
            ctx = None
            if li.kind == "tls":
                if not all(p.is_file() for p in self.config.cert_paths()):
                    if li.required:
                        missing = [str(p) for p in self.config.cert_paths() if not p.is_file()]
                        raise FileNotFoundError(f"TLS listener {li.name!r}: missing {', '.join(missing)}")
                    logs.info(
                        "listener.skipped", name=li.name,
                        reason=f"no certificates in {self.config.data_dir / 'certs'} (run: kestrel certs init)",
                    )
                    return
                ctx = tls_context(self.config)

            async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await self._serve_client(r, w, li)

            srv = await asyncio.start_server(
                on_client, li.host, li.port, ssl=ctx,
                ssl_handshake_timeout=self.config.limits.handshake_timeout if ctx else None,
                limit=self.config.limits.read_chunk, backlog=1024,
            )
            self._servers.append(srv)
            port = srv.sockets[0].getsockname()[1]
        self.ports[li.name] = port
        self.listening.append((li, port))
        logs.info("listener.open", name=li.name, kind=li.kind, host=li.host, port=port,
                  groups=self.config.groups_for(li))

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, li: ListenerConfig) -> None:
        cn = common_name(writer.get_extra_info("peercert")) if li.kind == "tls" else None
        session = Session(
            self.router, encode_for, reader, writer, listener=li.name,
            groups=self.config.groups_for(li, cn), limits=self.config.limits, cert_cn=cn,
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def _housekeep(self) -> None:
        every = self.config.store_flush_seconds
        while True:
            await asyncio.sleep(every)
            try:
                expired = self.router.expire()
                if self.store is not None:
                    self.store.flush(int(time.time() * 1000))
                if expired:
                    logs.debug("retained.expired", count=expired)
            except Exception as exc:  # a full disk must not stop routing; say so and retry
                logs.warning("store.error", reason=repr(exc))

    async def stop(self) -> None:
        """Close listeners, drop clients, flush and close the store. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for srv in self._servers:
            srv.close()
        for t in self._udp:
            t.close()
        for s in list(self.sessions):
            s.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        # Let the client tasks see their closed transports and finish.
        for _ in range(3):
            if not self.sessions:
                break
            await asyncio.sleep(0.01)
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
        if self.store is not None:
            self.store.close()
            logs.info("store.closed", path=self.store.path, flushes=self.store.flushes)
            self.store = None
        logs.info("server.stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
