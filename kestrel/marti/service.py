"""The Marti API inside `kestrel serve`: same process, event loop, router, data dir and groups.

    server = Server(cfg); server.extensions.append(Marti(marti_config.parse(cfg))); await server.start()

`start()` opens `<data>/marti/` (SQLite + blobs), the users file, and three listeners like TAK
Server's: plain HTTP (8080: anonymous callers get the plain-TCP clients' groups, as ATAK on a plain
streaming connection fetches packages there), HTTPS with client certificates (8443: the CA and
server certificate of 8089; groups by certificate CN: `[groups.certs]`, else the user of that name,
else the default) and HTTPS enrollment (8446: server certificate, HTTP Basic auth on every request;
groups of the user). It also tells the server that a certificate CN naming a user gets that user's
groups on 8089 too. Mission announcements go out through the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from typing import Any

from kestrel.cot.connection import encode_for
from kestrel.cot.event import Event
from kestrel.marti import routes
from kestrel.marti.clients import ClientLog
from kestrel.marti.config import MartiConfig
from kestrel.marti.db import open_db
from kestrel.marti.files import FileStore
from kestrel.marti.message import HttpError, Identity
from kestrel.marti.missions import Missions
from kestrel.marti.shell import HttpShell, ShellLimits, basic_credentials
from kestrel.marti.users import UserError, Users
from kestrel.marti.video import VideoRegistry
from kestrel.pki.tls import common_name
from kestrel.pki.tls import server_context as tls_context
from kestrel.server import logs
from kestrel.server.config import ListenerConfig
from kestrel.server.listeners import Listener, TcpListener, TlsListener

KINDS = ("http", "https", "enroll")
SWEEP_SECONDS = 5.0
MULTIPART_SLACK = 1 << 20  # multipart headers and fields around the file


def enroll_context(cert: Any, key: Any) -> ssl.SSLContext:
    """TLS 1.2+ with the server certificate and no client certificate (ATAK has none yet)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Marti:
    def __init__(self, mcfg: MartiConfig, limits: ShellLimits | None = None) -> None:
        self.mcfg = mcfg
        self.limits = limits or ShellLimits()
        self.ports: dict[str, int] = {}
        self.shells: dict[str, HttpShell] = {}
        self.state: routes.State | None = None
        self.users: Users | None = None
        self._listeners: list[Listener] = []
        self._server: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._db: Any = None
        self._verify = asyncio.Semaphore(2)  # password checks at once (scrypt: CPU and 16 MiB each)

    async def start(self, server: Any) -> None:
        cfg, m = server.config, self.mcfg
        self._server = server
        root = cfg.data_dir / "marti"
        self._db = open_db(root / "marti.db")
        files = FileStore(root, self._db, max_file=m.max_file, quota=m.quota)
        self.users = Users(cfg.data_dir)
        server.cn_groups = self.users.groups_of
        node = (root / "node-id")
        if not node.is_file():
            node.write_text(uuid.uuid4().hex)
        self.state = routes.State(
            data_dir=cfg.data_dir, files=files, video=VideoRegistry(self._db),
            missions=Missions(self._db, files, self.notify), users=self.users,
            clients=ClientLog(server.router), node_id=node.read_text().strip(), name_entries=m.name_entries,
        )
        max_upload = m.max_file + MULTIPART_SLACK
        metrics = getattr(server, "metrics", None)
        for kind in KINDS:
            if kind in m.ports:
                shell = self.shells[kind] = HttpShell(kind, self.state, self._authenticate, self.limits, max_upload)
                shell.metrics = metrics
                await self._listen(kind, m.ports[kind])
        if metrics is not None:
            metrics.gauge("marti_files_bytes", lambda: files.used, "bytes of distinct stored files (Marti API)")
            metrics.gauge("http_connections", lambda: {k: sh.active for k, sh in self.shells.items()},
                          "open Marti HTTP connections per listener", label="listener")
        self._sweeper = asyncio.create_task(self._sweep(), name="kestrel-marti-sweep")

    async def _listen(self, kind: str, port: int) -> None:
        cfg, m, shell = self._server.config, self.mcfg, self.shells[kind]
        required = kind in m.required
        listener: Listener
        try:
            if kind == "http":
                listener = await TcpListener.start(m.host, port, shell.serve, self.limits.chunk)
            else:
                ca, cert, key = cfg.cert_paths()
                if not all(p.is_file() for p in (ca, cert, key)):
                    if required:
                        raise FileNotFoundError(f"--{kind}-port: missing {ca.parent} certificates (run: kestrel certs init)")
                    logs.info("listener.skipped", name=kind, reason=f"no certificates in {ca.parent} (run: kestrel certs init)")
                    return
                ctx = (self._server._tls_ctx or tls_context(ca, cert, key)) if kind == "https" else enroll_context(cert, key)
                listener = await TlsListener.start(m.host, port, ctx, shell.serve, name=kind, limit=self.limits.chunk,
                                                   handshake_timeout=cfg.limits.handshake_timeout)
        except OSError as exc:
            if required:
                raise
            logs.warning("listener.skipped", name=kind, port=port, reason=exc.strerror or repr(exc))
            return
        self._listeners.append(listener)
        self.ports[kind] = listener.port
        logs.info("listener.open", name=kind, kind="https" if kind != "http" else "http", host=m.host,
                  port=listener.port, groups=m.http_groups if kind == "http" else None)

    async def _authenticate(self, kind: str, headers: dict[str, str], peercert: Any, route: routes.Route) -> Identity:
        server, m = self._server, self.mcfg
        if kind == "http":
            if route.enroll:
                raise HttpError(403, f"enrollment needs HTTPS (port {self.ports.get('enroll', 8446)})")
            return Identity(None, m.http_groups, "anonymous")
        if kind == "https":
            cn = common_name(peercert)
            if cn is None:
                raise HttpError(403, "a client certificate is required")
            li = ListenerConfig("https", "tls", m.host, 0)
            return Identity(cn, server.groups_for(li, cn), "cert")
        cred = basic_credentials(headers)
        if cred is None:
            raise HttpError(401, "credentials required (HTTP Basic)")
        user, password = cred
        assert self.users is not None
        async with self._verify:
            try:
                ok = await asyncio.get_running_loop().run_in_executor(None, self.users.verify, user, password)
            except UserError as exc:  # a hand-edited users.json: say so, refuse everyone, keep serving
                logs.warning("users.unreadable", reason=str(exc)[:200])
                raise HttpError(500, "the server's users file is unreadable (see the server log)") from None
        if not ok:
            logs.info("http.auth_failed", listener=kind, user=user[:64])
            if getattr(server, "metrics", None) is not None:
                server.metrics.inc("refused_http_auth")
            raise HttpError(401, "Bad credentials")
        groups = self.users.groups_of(user) or frozenset(server.config.default_groups)
        return Identity(user, groups, "basic")

    def notify(self, event: Event, groups: frozenset[str], to_uids: list[str] | None) -> int:
        """Send a mission announcement: to everyone in `groups`, or only to the clients `to_uids`
        (still only within `groups`). Returns how many clients it was queued for."""
        router = self._server.router
        if to_uids is None:
            return int(router.route(event, None, groups))
        n = 0
        wire: dict[str, bytes] = {}
        for peer_id in [pid for uid in to_uids for pid in router.contacts.get(uid, {})]:
            peer = router.peers.get(peer_id)
            if peer is None or peer.groups.isdisjoint(groups):
                continue
            data = wire.get(peer.format) or wire.setdefault(peer.format, encode_for(peer.format, event))
            if peer.send(data):
                n += 1
        return n

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            if self.state is not None and self.state.clients is not None:
                self.state.clients.sweep()

    def help_lines(self) -> list[str]:
        host, out = self.mcfg.host, []
        what = {"http": "Marti API (data packages, video) for plain-TCP clients",
                "https": "Marti API with client certificates (ATAK on SSL)",
                "enroll": "enrollment: ATAK 'Enroll for client certificate', a user from `kestrel users add`"}
        for kind in KINDS:
            if kind in self.ports:
                url = f"{'http' if kind == 'http' else 'https'}://{host}:{self.ports[kind]}"
                out.append(f"  {url:28} {what[kind]}")
        return out

    async def stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for listener in self._listeners:
            await listener.wait_closed()
        if self._db is not None:
            self._db.close()
            self._db = None
