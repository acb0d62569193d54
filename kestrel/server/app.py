"""The server: listeners (TCP, TLS with client certificates, UDP), the router, the store.

Tasks: one accept loop per listener (asyncio's), a reader and a writer task per streaming client,
one housekeeping task (store flush + expiry every `store_flush_seconds`). Everything runs on one
event loop thread; the router is plain synchronous code in between.

Start-up owns the data dir: it must be a directory, one server at a time (`datadir.DataDirLock`,
naming the other pid), and an unreadable `kestrel.db` stops the start (`StoreError`) unless
`config.repair` moves it aside. Counters and gauges live in `self.metrics` (`GET /metrics` on
`metrics_host:metrics_port`, loopback by default; its port is written to the lock file).
Connections over `max_connections` / `max_connections_per_address` are closed at once: plain TCP
when accepted, TLS at accept too, before the handshake (pending handshakes count against the caps).
After a connection is closed as oversize, new ones from its address are refused the same way for
`oversize_penalty_s` (`refused{reason="penalty"}`; bounded, never extended by a refusal).

    server = Server(config); await server.start(); server.ports["tcp"]; ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kestrel.cot.connection import decode_datagram, encode_for
from kestrel.cot.event import Event
from kestrel.cot.xml import parse_event
from kestrel.errors import NotFound, PortInUse
from kestrel.pki.tls import common_name, server_context
from kestrel.server import datadir, logs
from kestrel.server.config import ListenerConfig, ServerConfig, check_exposure, is_loopback
from kestrel.server.listeners import Listener, TcpListener, TlsListener, UdpListener
from kestrel.server.metrics import Metrics, MetricsListener
from kestrel.server.router import Retained, Router
from kestrel.server.session import Session
from kestrel.server.store import Store, StoreError, set_aside

DB_NAME = "kestrel.db"
PENALTY_ADDRESSES = 10_000  # addresses under an oversize penalty remembered at once


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.metrics = Metrics()
        self.router = Router(encode_for, None, config.limits.max_retained, metrics=self.metrics,
                             retained_bytes_per_group=config.limits.retained_bytes_per_group)
        self.sessions: set[Session] = set()
        self._per_address: dict[str, int] = {}
        self._penalty: dict[str, float] = {}  # address -> monotonic time its oversize penalty ends
        self.clock: Callable[[], float] = time.monotonic
        self._lock: datadir.DataDirLock | None = None
        self._metrics_listener: MetricsListener | None = None
        m = self.metrics
        m.gauge("clients", lambda: len(self.sessions), "streaming clients connected")
        m.gauge("retained_items", lambda: self.router.count(), "retained items (all groups)")
        m.gauge("retained_bytes", lambda: dict(self.router.group_bytes), "retained bytes per group", "group")
        m.gauge("store_pending", lambda: self.store.pending if self.store else 0, "store rows waiting for a flush")
        m.describe("dropped", "events dropped, by reason")
        m.describe("closed", "client connections closed by the server, by reason")
        m.describe("refused", "connections refused at accept, by reason")
        self.ports: dict[str, int] = {}
        self.listening: list[tuple[ListenerConfig, int]] = []
        self._listeners: list[Listener] = []
        self.dropped_slow = 0
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._tls_ctx: ssl.SSLContext | None = None
        # Extensions (the Marti HTTP API): `await ext.start(server)` after the listeners open,
        # `await ext.stop()` before the store closes. `cn_groups(cn)`: groups of a certificate CN
        # not in [groups.certs] (an enrolled user's), or None.
        self.extensions: list[Any] = []
        self.cn_groups: Callable[[str], frozenset[str] | None] | None = None
        # kestrel.cluster.backplane.Backplane (`--cluster`): the site's NATS stream replaces the
        # SQLite store (and so the data-dir lock) and joins this router to the others'. None: one process.
        self.backplane: Any = None

    async def start(self) -> None:
        cfg = self.config
        check_exposure(cfg)  # ConfigError: an anonymous listener exposed without its own groups
        self._prepare_tls()  # BadInput naming the file: before anything is opened
        datadir.prepare(cfg.data_dir)  # DataDirError: a file, not creatable
        if self.backplane is None:
            self._lock = datadir.DataDirLock.acquire(cfg.data_dir)  # DataDirError naming the other pid
        try:
            if self.backplane is not None:
                await self.backplane.start()  # ClusterError; replays the stored picture first
            else:
                self.store = self._open_store(cfg.data_dir / DB_NAME)
                self.router.attach_store(self.store)
                self._restore()
            for li in cfg.listeners:
                try:
                    await self._listen(li)
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise PortInUse(li.port, _port_flag(li), li.host) from None
            if cfg.metrics_port is not None:
                self._metrics_listener = await MetricsListener.start(cfg.metrics_host, cfg.metrics_port,
                                                                     self.metrics.render)
                self.ports["metrics"] = self._metrics_listener.port
                if self._lock is not None:
                    self._lock.write(metrics=f"{cfg.metrics_host}:{self._metrics_listener.port}")
                if not is_loopback(cfg.metrics_host):
                    logs.warning("listener.exposed", name="metrics", host=cfg.metrics_host, note="plain HTTP")
                logs.info("listener.open", name="metrics", kind="http", host=cfg.metrics_host,
                          port=self._metrics_listener.port, path="/metrics")
            for ext in self.extensions:
                await ext.start(self)
        except BaseException:
            await self.stop()
            raise
        self._housekeeping = asyncio.create_task(self._housekeep(), name="kestrel-housekeeping")

    def _prepare_tls(self) -> None:
        """Load the TLS files once for all TLS listeners; skip a default one without certificates."""
        tls = [li for li in self.config.listeners if li.kind == "tls"]
        if not tls:
            return
        paths = self.config.cert_paths()
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            required = [li.name for li in tls if li.required]
            if required:
                raise NotFound(f"TLS listener {required[0]!r}: missing {', '.join(missing)} (run `kestrel certs init`)")
            return  # _listen logs listener.skipped
        self._tls_ctx = server_context(*paths)

    def _open_store(self, path: Path) -> Store:
        try:
            return Store(path)
        except StoreError:
            if not self.config.repair:
                raise
        kept = set_aside(path)
        logs.warning("store.repaired", path=path, moved_to=kept,
                     note="the unreadable store was moved aside; starting with an empty picture")
        return Store(path)

    def _restore(self) -> None:
        assert self.store is not None
        rows = self.store.load(int(time.time() * 1000))
        bad = 0
        for row in rows:
            try:
                event = parse_event(row.xml)
            except Exception:
                bad += 1
                self.store.delete(row.uid, row.groups)
                continue
            self.router.restore(Retained(event, row.groups, owner=row.owner))
        logs.info("store.open", path=self.store.path, retained=len(rows) - bad, unreadable=bad)

    async def _listen(self, li: ListenerConfig) -> None:
        cfg = self.config
        if not is_loopback(li.host):
            note = "plain, no authentication" if li.kind in ("tcp", "udp") else None
            logs.warning("listener.exposed", name=li.name, host=li.host, note=note)
        listener: Listener
        if li.kind == "udp":
            groups = cfg.groups_for(li)
            listener = await UdpListener.start(
                li.host, li.port, li.name, decode_datagram, lambda ev: self._route_datagram(ev, groups),
                on_error=lambda: self.metrics.inc("dropped_invalid"), reuse_port=cfg.reuse_port,
            )
        elif li.kind == "tls":
            if self._tls_ctx is None:  # no certificates, and this listener is the optional default
                logs.info("listener.skipped", name=li.name,
                          reason=f"no certificates in {cfg.cert_paths()[0].parent} (run: kestrel certs init)")
                return

            async def on_tls(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await self._serve_client(r, w, li, common_name(w.get_extra_info("peercert")))

            listener = await TlsListener.start(
                li.host, li.port, self._tls_ctx, on_tls, name=li.name,
                limit=cfg.limits.read_chunk, handshake_timeout=cfg.limits.handshake_timeout,
                reuse_port=cfg.reuse_port,
                admit=lambda address, peer, pending, pending_all: self._stopped.is_set() or self._admit(
                    address, peer, li.name, pending, pending_all) is not None,
            )
        else:

            async def on_tcp(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await self._serve_client(r, w, li, None)

            listener = await TcpListener.start(li.host, li.port, on_tcp, cfg.limits.read_chunk, cfg.reuse_port)
        self._listeners.append(listener)
        self.ports[li.name] = listener.port
        self.listening.append((li, listener.port))
        logs.info("listener.open", name=li.name, kind=li.kind, host=li.host, port=listener.port,
                  groups=cfg.groups_for(li))

    def _route_datagram(self, event: Event, groups: frozenset[str]) -> None:
        """UDP carries situational events only: control (pings, negotiation, deletes: `t-*`) is
        dropped; the router keeps a datagram from echoing to its sender's own stream."""
        if event.type.startswith("t-"):
            self.metrics.inc("dropped_udp_control")
            self.metrics.limited_warning("udp.control_dropped", type=logs.short(event.type, 40),
                                         uid=logs.short(event.uid, 80))
            return
        self.router.route(event, None, groups)

    def _admit(self, address: str, peer: str, listener: str, pending: int = 0, pending_all: int = 0) -> str | None:
        """Why a new connection from `address` must be refused now, or None. `pending`/`pending_all`:
        TLS handshakes in progress from that address / in all (they count as connections)."""
        lim = self.config.limits
        if len(self.sessions) + pending_all >= lim.max_connections:
            reason = "max_connections"
        elif self._per_address.get(address, 0) + pending >= lim.max_connections_per_address:
            reason = "per_address"
        elif self._penalty and self._penalized(address):
            reason = "penalty"
        else:
            return None
        self.metrics.inc(f"refused_{reason}")
        self.metrics.limited_warning(f"client.refused_{reason}", peer=peer, listener=listener,
                                     clients=len(self.sessions), from_address=self._per_address.get(address, 0))
        return reason

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, li: ListenerConfig, cn: str | None
    ) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self._stopped.is_set() or self._admit(address, f"{address}:{peer[1] if isinstance(peer, tuple) else ''}",
                                                  li.name):
            writer.transport.abort()
            return
        session = Session(
            self.router, encode_for, reader, writer, listener=li.name,
            groups=self.groups_for(li, cn), limits=self.config.limits, cert_cn=cn, metrics=self.metrics,
        )
        self.sessions.add(session)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            left = self._per_address[address] = self._per_address[address] - 1
            if left <= 0:
                del self._per_address[address]
            if session.close_reason == "slow":
                self.dropped_slow += 1
            elif session.close_reason == "oversize" and self.config.limits.oversize_penalty_s > 0:
                self._penalize(address)

    def _penalize(self, address: str) -> None:
        """Refuse new connections from `address` for `oversize_penalty_s` (a huge-event sender that
        reconnects in a loop). Only an oversize close sets it (a refused connection never extends it),
        so others behind the same NAT address wait at most that long after the last one; existing
        connections are untouched. At most PENALTY_ADDRESSES remembered (oldest forgotten)."""
        self._penalty.pop(address, None)
        self._penalty[address] = self.clock() + self.config.limits.oversize_penalty_s
        while len(self._penalty) > PENALTY_ADDRESSES:
            del self._penalty[next(iter(self._penalty))]

    def _penalized(self, address: str) -> bool:
        until = self._penalty.get(address)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._penalty[address]
        return False

    def groups_for(self, li: ListenerConfig, cn: str | None) -> frozenset[str]:
        """[groups.certs] for this CN, else an enrolled user's groups, else the listener's."""
        if cn is not None and cn not in self.config.cert_groups and self.cn_groups is not None:
            groups = self.cn_groups(cn)
            if groups:
                return groups
        return self.config.groups_for(li, cn)

    async def _housekeep(self) -> None:
        every = self.config.store_flush_seconds
        tick = 0
        while True:
            await asyncio.sleep(every)
            tick += 1
            try:
                # Expiry walks every retained item: every 10th tick (stale items are never sent
                # meanwhile: join() filters them).
                expired = self.router.expire() if tick % 10 == 0 else 0
                if self.store is not None:
                    await self._flush_store(int(time.time() * 1000))
                if expired:
                    logs.debug("retained.expired", count=expired)
                if tick % 60 == 0:
                    st = self.router.stats
                    logs.info("server.stats", clients=len(self.sessions), retained=self.router.count(),
                              routed=st.routed, delivered=st.delivered, addressed=st.addressed, unreadable=st.unreadable,
                              dropped_slow=self.dropped_slow, store_pending=self.store.pending if self.store else 0,
                              **{k: v for k, v in self.metrics.counters.items() if v})
            except Exception as exc:  # a full disk must not stop routing; say so and retry
                logs.warning("store.error", reason=repr(exc))

    async def _flush_store(self, now_ms: int) -> None:
        """Write the dirty rows in a worker thread: SQLite's time (big rows, fsync) is not the loop's."""
        store = self.store
        assert store is not None
        dirty = store.take()
        try:
            await asyncio.to_thread(store.write, dirty, now_ms)
        except BaseException:
            store.untake(dirty)
            raise

    async def stop(self) -> None:
        """Close listeners, drop clients, flush and close the store. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for listener in self._listeners:
            listener.close()
        if self._metrics_listener is not None:
            self._metrics_listener.close()
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
        for listener in self._listeners:
            await listener.wait_closed()
        if self._metrics_listener is not None:
            await self._metrics_listener.wait_closed()
        for ext in self.extensions:
            with contextlib.suppress(Exception):
                await ext.stop()
        if self.backplane is not None:
            await self.backplane.stop()
        if self.store is not None:
            self.store.close()
            logs.info("store.closed", path=self.store.path, flushes=self.store.flushes)
            self.store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        logs.info("server.stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _port_flag(li: ListenerConfig) -> str:
    """How the user changes a listener's port: the flag of a standard one, else its config entry."""
    if li.name == li.kind:
        return f"--{li.kind}-port (or {li.kind}_port in [server] of the config)"
    return f"port = in the [[listeners]] entry {li.name!r} of the config"
