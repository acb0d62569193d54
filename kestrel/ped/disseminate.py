"""Push CoT to a TAK server (ours or any) over TCP or TLS: a small, bounded, reconnecting client.

pytak-style: one asyncio worker with one bounded queue, in its own thread so the (synchronous)
video pipeline can `offer()` events without blocking. When the queue is full the OLDEST event
is dropped and counted: fresh positions matter more than old ones on a weak link. The worker
reconnects with capped back-off, retries the event that failed, and drains whatever the server
sends (bounded reads, discarded) so the server never sees us as a slow consumer. `close()`
sends what is queued, then closes the connection cleanly. Speaks plain CoT XML (it never
answers the server's TAK-protocol offer, so the server keeps XML for us).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kestrel.cot.event import Event
from kestrel.errors import BadInput

QUEUE_MAX = 1024  # events waiting to be sent; beyond this the oldest is dropped
READ_CHUNK = 65536
RETRY_DOWN_S = 2.0  # while the server is down, how often to try again


class PushError(BadInput):
    """A push target that cannot be used (bad URL, TLS without certificates)."""


@dataclass(frozen=True, slots=True)
class Target:
    tls: bool
    host: str
    port: int

    def __str__(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://{self.host}:{self.port}"


def parse_target(url: str) -> Target:
    """`tcp://HOST:PORT` or `tls://HOST:PORT` (`ssl://` accepted as TLS)."""
    u = urlsplit(url)
    if u.scheme not in ("tcp", "tls", "ssl") or not u.hostname or u.port is None:
        raise PushError(f"{url}: push target must be tcp://HOST:PORT or tls://HOST:PORT")
    return Target(u.scheme != "tcp", u.hostname, u.port)


@dataclass(slots=True)
class PushReport:
    """What was sent, for report.json and the CLI's summary."""

    target: str
    sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped: int = 0
    connects: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    uids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "sent": self.sent, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "dropped": self.dropped, "connects": self.connects,
                "by_type": dict(self.by_type), "uids": list(self.uids), "errors": list(self.errors)}


def encode(events: Iterable[Event]) -> list[tuple[Event, bytes]]:
    from kestrel.cot.xml import encode_event

    return [(ev, encode_event(ev)) for ev in events]


class Pusher:
    """Background CoT sender. Thread-safe `offer()`; `close()` flushes and returns the report."""

    def __init__(self, target: Target, ssl_ctx: ssl.SSLContext | None = None, *, queue_max: int = QUEUE_MAX,
                 connect_timeout: float = 5.0, max_attempts: int = 4, write_timeout: float = 10.0) -> None:
        if target.tls and ssl_ctx is None:
            raise PushError(f"{target}: TLS needs a client certificate (--cert/--key/--ca or --certs DIR)")
        self.target = target
        self.report = PushReport(str(target))
        self._ssl = ssl_ctx if target.tls else None
        self._queue: collections.deque[tuple[Event, bytes] | None] = collections.deque()
        self._queue_max = queue_max
        self._cond = threading.Condition()
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._max_attempts = max_attempts
        self._down = False
        self._down_since = 0.0
        self.peer_closed = threading.Event()  # set when the server ends the current connection
        self._thread = threading.Thread(target=self._main, name=f"cot-push {target}", daemon=True)
        self._thread.start()

    # ---- producer side (any thread) ------------------------------------------------------------
    def offer(self, events: Iterable[Event]) -> None:
        """Queue events for sending; never blocks (drops the oldest when full)."""
        items = encode(events)
        with self._cond:
            for item in items:
                if len(self._queue) >= self._queue_max:
                    self._queue.popleft()
                    self.report.dropped += 1
                self._queue.append(item)
            self._cond.notify()

    def close(self, timeout: float = 30.0) -> PushReport:
        """Send what is queued, close the connection, stop the worker; returns the report."""
        with self._cond:
            self._queue.append(None)
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.report.errors.append(f"gave up after {timeout:.0f} s with events unsent")
        return self.report

    def _next(self) -> tuple[Event, bytes] | None:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            return self._queue.popleft()

    # ---- worker (its own thread and event loop) ------------------------------------------------
    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]] | None = None
        try:
            while True:
                item = await loop.run_in_executor(None, self._next)
                if item is None:
                    return
                conn = await self._send(item, conn)
        finally:
            if conn is not None:
                await self._disconnect(conn)

    async def _send(self, item: tuple[Event, bytes],
                    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]] | None
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]] | None:
        ev, data = item
        # While the server is unreachable: one reconnect try per RETRY_DOWN_S, events in between
        # are dropped and counted (fresh ones follow; a finite batch fails fast, never hangs).
        if self._down and time.monotonic() - self._down_since < RETRY_DOWN_S:
            self.report.dropped += 1
            return conn
        for attempt in range(1 if self._down else self._max_attempts):
            try:
                if conn is None or conn[1].is_closing() or conn[2].done():
                    if conn is not None:
                        await self._disconnect(conn)
                    conn = await self._connect()
                conn[1].write(data)
                await asyncio.wait_for(conn[1].drain(), self._write_timeout)
                r = self.report
                r.sent += 1
                r.bytes_sent += len(data)
                r.by_type[ev.type] = r.by_type.get(ev.type, 0) + 1
                r.uids.append(ev.uid)
                self._down = False
                return conn
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.report.errors.append(f"{self.target}: {type(exc).__name__}: {exc}".strip())
                if conn is not None:
                    await self._disconnect(conn)
                    conn = None
                await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
        self.report.dropped += 1
        self._down, self._down_since = True, time.monotonic()
        return conn

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
        t = self.target
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(t.host, t.port, ssl=self._ssl, limit=READ_CHUNK), self._connect_timeout
        )
        self.report.connects += 1
        self.peer_closed.clear()
        return reader, writer, asyncio.create_task(self._drain_incoming(reader))

    async def _drain_incoming(self, reader: asyncio.StreamReader) -> None:
        """Read and discard what the server sends (SA of others, protocol offers); O(1) memory."""
        try:
            while chunk := await reader.read(READ_CHUNK):
                self.report.bytes_received += len(chunk)
        except (OSError, ssl.SSLError):
            pass
        self.peer_closed.set()

    async def _disconnect(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]) -> None:
        _, writer, task = conn
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        task.cancel()


def push(url: str, events: Iterable[Event], ssl_ctx: ssl.SSLContext | None = None,
         timeout: float = 30.0) -> PushReport:
    """Send a finite batch of events and close: what `kestrel ped disseminate` does."""
    pusher = Pusher(parse_target(url), ssl_ctx)
    t0 = time.monotonic()
    pusher.offer(events)
    return pusher.close(max(1.0, timeout - (time.monotonic() - t0)))


def tls_context(*, cert: str | None = None, key: str | None = None, ca: str | None = None,
                certs_dir: str | None = None, client: str | None = None,
                check_hostname: bool = True) -> ssl.SSLContext:
    """Client TLS context: explicit PEM files, or a `kestrel certs` data dir and client name."""
    from kestrel.pki.tls import client_ssl_context, pem_client_context

    if certs_dir is not None:
        if client is None:
            raise PushError("--certs needs --client NAME (a client made by `kestrel certs client NAME`)")
        return client_ssl_context(certs_dir, client, check_hostname=check_hostname)
    if not (cert and key and ca):
        raise PushError("TLS push needs --cert, --key and --ca (PEM files), or --certs DIR --client NAME")
    return pem_client_context(ca, cert, key, check_hostname=check_hostname)
