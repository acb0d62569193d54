"""One streaming client (TCP or TLS): a reader task, a writer task, one bounded outbound queue.

The reader feeds bytes to the sans-I/O `Connection` (framing, negotiation, ping) and hands each
event to the router, which gives encoded bytes to other sessions with `send()`, never an await, so
one client can never block another. `send()` corks: while nothing is queued and the transport
holds < 64 KiB, the bytes go to the client's cork, and one callback per loop iteration (`_Corks`)
writes each corked client's bytes with one transport write (one send() syscall per client per
iteration, however many events were routed to it meanwhile: at 400 clients that is the difference
between 160 k and a few thousand syscalls a second, for the server and its clients alike; a cork
over WRITE_BATCH is written at once). Otherwise it appends to the deque and wakes the writer task,
which drains it in batches, awaiting the socket (`drain()`) between batches. Worst-case added
latency: one loop iteration. `KESTREL_CORK=0` writes each message at once (the benchmark's baseline).

A client that cannot keep up (more than `queue_bytes` or `queue_messages` waiting) is dropped with
a `client.slow` log line; memory per client is therefore bounded by the queue limits plus the
transport's own high-water mark (64 KiB) and one read chunk. On join the client first gets the
retained picture (streamed lazily from the router's cache, in XML, not counted against the queue
limit; items replaced or deleted meanwhile are skipped), then the protobuf offer from
`Connection.start()`, then live traffic. Live traffic that arrives during the snapshot is held and
counted against the same limits, but retained state (SA, markers) is coalesced per uid there, so a
slow joiner is bounded by the number of changing uids, not by how long its snapshot takes. The
snapshot yields to the loop after every batch, and the answers to this client's own pings and
negotiation bypass the hold, so a newcomer gets its pong while its picture is still on the way.

Per-client limits (`Limits`, each costs only this client, counted in `Metrics`):
- events in: a token bucket (`events_per_s_per_client`, `events_burst_per_client`; a new
  connection starts with one second's worth). Each frame pays before it is decoded (`_gate`);
  without a token it is dropped unparsed (`dropped_rate`) and the socket is not read for up to
  1 s (TCP backpressure; `throttled_rate`); pings pass free. While its reads keep dropping, a
  client is read `LIMITED_READ` bytes at a time, not `read_chunk`: a flood costs framing a few
  frames per pause, not a whole chunk of them (measured in the soak: ~240 frames per flooder per
  second before). Drops are counted once per read (one counter update, one rate-limited line);
- bytes in: a second token bucket (`bytes_per_s_per_client`, `bytes_burst_per_client`, one
  second's worth at connect) paid by every read; in debt, the socket is not read until the debt is
  repaid (`throttled_bytes`): whatever a client sends beyond its byte rate (huge events, a flood of
  big markers) waits in the kernel and the sender's TCP window, costing the server nothing, and
  one read is at most `read_chunk`, so the debt (and a pause) is at most read_chunk / rate;
- `idle_timeout_s` without any byte in: closed (`closed_idle`);
- `incomplete_event_timeout_s` from the first byte of an event that has not ended (trickling does
  not reset it): closed (`closed_incomplete`);
- a bad event is skipped (`dropped_invalid`); a broken stream or an event over `max_event_bytes`
  closes it (`closed_bad_input`, `closed_oversize`); a full queue drops it (`closed_slow`).
One watchdog timer per client, re-armed only when it fires (no per-read timer churn).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from kestrel.cot.connection import Connection, ProtocolError
from kestrel.cot.event import Event
from kestrel.server import logs
from kestrel.server.config import Limits
from kestrel.server.metrics import Metrics
from kestrel.server.router import Retained, Router

_ids = itertools.count(1)
WRITE_BATCH = 256 * 1024  # bytes joined into one transport write
DIRECT_LIMIT = 64 * 1024  # write straight to the transport while its buffer holds less than this
LOG_FIRST_ERRORS = 10  # per client; after that one line per 1000 errors
LIMITED_READ = 4096  # bytes per read while a client's reads keep being rate-dropped (~10 SA)
BIG_WORK = 128 * 1024  # a read that holds more than this (with the unfinished event before it) waits its turn


CORK = os.environ.get("KESTREL_CORK", "1") != "0"


class _Corks:
    """The sessions with corked bytes, written by one `call_soon` callback per loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Session] = []

    def add(self, session: Session) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(session)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s._uncork()


_corks: dict[asyncio.AbstractEventLoop, _Corks] = {}
_turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _big_turn(loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
    """Big reads take turns, at most one per event-loop iteration. Goal: a few clients posting big
    events at once (five 900 KB markers: ~5-8 ms each of framing, parsing, the detail scan and
    routing) cost everyone else one such wait, not the sum of them in one stall (measured: ~35 ms
    added to well-behaved clients' p99 in bench/soak.py). Worst case: a big poster waits one
    iteration per big poster ahead of it; small reads never wait."""
    t = _turns.get(loop)
    if t is None:
        if len(_turns) > 8:  # loops of finished runs (tests): forget them
            _turns.clear()
        t = _turns[loop] = asyncio.Lock()
    return t


def _corks_of(loop: asyncio.AbstractEventLoop) -> _Corks:
    c = _corks.get(loop)
    if c is None:
        if len(_corks) > 8:  # loops of finished runs (tests): forget them
            _corks.clear()
        c = _corks[loop] = _Corks(loop)
    return c


def _keepalive(sock: socket.socket | None) -> None:
    """TCP keepalive: a peer that vanished (radio out of range) is noticed after ~2 min idle."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
    except OSError:  # pragma: no cover - not a TCP socket on this platform
        pass


class Session:
    def __init__(
        self,
        router: Router,
        encode: Callable[[str, Event], bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        listener: str,
        groups: frozenset[str],
        limits: Limits,
        cert_cn: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = next(_ids)
        self.groups = groups
        self.listener = listener
        self.cert_cn = cert_cn
        self.identity = cert_cn  # authenticated identity (TLS client certificate CN), None over plain TCP
        self.metrics = metrics if metrics is not None else router.metrics
        self._router = router
        self._encode = encode
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self.conn = Connection(max_event_bytes=limits.max_event_bytes, negotiation_window=limits.negotiation_window)
        self.conn.gate = self._gate
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._wake = asyncio.Event()
        self._transport = writer.transport
        self._direct = False  # True once the join snapshot is written (it must go first)
        # The join snapshot still to write, as weak references: an item evicted or replaced while a
        # slow joiner waits is freed at once, not kept alive by every joiner (memory stays the budget).
        self._snapshot: list[weakref.ref[Retained]] = []
        # While the snapshot is written, live traffic is held: retained state coalesced per uid (only
        # the latest counts against the limits, so a slow joiner is not dropped for SA repeats),
        # everything else in order; merged by arrival number when the snapshot is done.
        self._holding = True
        self._seq = 0
        self._held: deque[tuple[int, bytes]] = deque()
        self._latest: dict[str, tuple[int, bytes]] = {}
        self._cork: list[bytes] = []  # written once per loop iteration (see _Corks)
        self._cork_bytes = 0
        self.closed = False
        self.close_reason: str | None = None
        self.received = 0
        self.errors = 0
        self.rate_dropped = 0
        self._limited = False  # dropped something for rate during this read
        self._drops = 0  # rate drops of this read, not yet counted in metrics
        self._pause_fut: asyncio.Future[None] | None = None  # a read pause in progress (see _sleep)
        self._free = 0  # frames let through the gate without a token (they looked like control)
        # A new connection starts with one second's worth, not the whole burst: reconnecting must not
        # buy a flooder a fresh burst each time (the bucket fills up to the burst while it is quiet).
        self._tokens = float(min(limits.events_burst_per_client, max(1.0, limits.events_per_s_per_client)))
        self._loop = asyncio.get_running_loop()
        self._corks = _corks_of(self._loop) if CORK else None
        self._refilled = self._loop.time()
        self._byte_tokens = float(min(limits.bytes_burst_per_client, limits.bytes_per_s_per_client))
        self._bytes_refilled = self._refilled
        self.throttled = 0  # read pauses (event rate or byte rate)
        self._last_rx = self._refilled
        self._partial_since: float | None = None  # loop time of the first byte of an unfinished event
        self._owed = 0.0  # seconds of byte budget the last read overdrew (read pauses that long)
        self._watchdog: asyncio.TimerHandle | None = None
        peer = writer.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        _keepalive(writer.get_extra_info("socket"))

    @property
    def format(self) -> str:
        return self.conn.format

    # -- called by the router (synchronous, never blocks) ---------------------------------------

    def send(self, data: bytes, key: str | None = None) -> bool:
        """Queue bytes for this client; drop the client if its queue is over the limits.

        `key`: the uid of retained state; during the join snapshot a newer message with the same key
        replaces the older one still waiting.
        """
        cork = self._cork
        if cork:  # corked already this iteration (so open then): behind those bytes, order is kept
            cork.append(data)
            self._cork_bytes += len(data)
            if self._cork_bytes >= WRITE_BATCH:
                self._uncork()
            return True
        if self.closed or self._transport.is_closing():
            return False
        if self._holding:
            return self._hold(data, key)
        out = self._out
        if not out and self._direct and self._transport.get_write_buffer_size() < DIRECT_LIMIT:
            # Fast path: nothing queued and the socket keeps up -> the bytes go to the transport
            # at the end of this loop iteration, with whatever else this client gets meanwhile
            # (one send() call, no task switch). Order is kept: the queue is empty.
            if self._corks is None:
                self._transport.write(data)
                return True
            cork.append(data)
            self._cork_bytes = len(data)
            self._corks.add(self)
            return True
        if self._out_bytes + len(data) > self._limits.queue_bytes or len(out) >= self._limits.queue_messages:
            self.abort("slow", queued_bytes=self._out_bytes, queued_messages=len(out))
            return False
        out.append(data)
        self._out_bytes += len(data)
        self._wake.set()
        return True

    def _uncork(self) -> None:
        """Write the corked bytes with one transport write (a no-op once written or closed)."""
        cork = self._cork
        if not cork:
            return
        data = cork[0] if len(cork) == 1 else b"".join(cork)
        cork.clear()
        self._cork_bytes = 0
        if not self.closed and not self._transport.is_closing():
            self._transport.write(data)

    def _hold(self, data: bytes, key: str | None) -> bool:
        """Live traffic while the snapshot is written. O(1); bounded by the same queue limits."""
        self._seq += 1
        if key is not None:
            old = self._latest.pop(key, None)  # re-insert: dict order stays arrival order
            if old is not None:
                self._out_bytes -= len(old[1])
        queued = len(self._held) + len(self._latest)
        if self._out_bytes + len(data) > self._limits.queue_bytes or queued >= self._limits.queue_messages:
            self.abort("slow", queued_bytes=self._out_bytes, queued_messages=queued, joining=True)
            return False
        if key is None:
            self._held.append((self._seq, data))
        else:
            self._latest[key] = (self._seq, data)
        self._out_bytes += len(data)
        return True

    def _release(self) -> None:
        """Snapshot written: held traffic goes to the live queue in arrival order. O(held)."""
        self._out.extend(data for _, data in heapq.merge(self._held, self._latest.values()))
        self._held.clear()
        self._latest.clear()
        self._holding = False

    def abort(self, reason: str, **fields: Any) -> None:
        """Drop this client now (no flush): leaves the router, resets the transport."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._router.leave(self)
        self.metrics.inc(f"closed_{reason}")
        self.metrics.limited_warning(f"client.{reason}", id=self.id, peer=self.peer, listener=self.listener,
                                     **fields)
        self._writer.transport.abort()
        self._wake.set()
        self._end_pause()
        self._stop_watchdog()

    # -- limits ---------------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        lim = self._limits
        due = self._last_rx + lim.idle_timeout_s
        if self._partial_since is not None:
            due = min(due, self._partial_since + lim.incomplete_event_timeout_s)
        self._watchdog = self._loop.call_at(due, self._watch)

    def _watch(self) -> None:
        """Timer: close a client silent for idle_timeout_s, or sitting on an unfinished event."""
        if self.closed:
            return
        now, lim = self._loop.time(), self._limits
        if self._partial_since is not None and now >= self._partial_since + lim.incomplete_event_timeout_s:
            self.abort("incomplete", pending_bytes=self.conn.pending, seconds=lim.incomplete_event_timeout_s)
        elif now >= self._last_rx + lim.idle_timeout_s:
            self.abort("idle", seconds=lim.idle_timeout_s)
        else:
            self._arm_watchdog()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _refill(self, now: float) -> float:
        lim = self._limits
        self._tokens = min(float(lim.events_burst_per_client),
                           self._tokens + (now - self._refilled) * lim.events_per_s_per_client)
        self._refilled = now
        return self._tokens

    def _take_token(self, now: float) -> bool:
        """Token bucket: `events_per_s_per_client` sustained, `events_burst_per_client` at once."""
        if self._refill(now) >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _charge_bytes(self, now: float, n: int) -> float:
        """Pay `n` bytes read; returns the seconds of not reading that repay the debt (0: none)."""
        lim = self._limits
        rate = float(lim.bytes_per_s_per_client)
        tokens = min(float(lim.bytes_burst_per_client), self._byte_tokens + (now - self._bytes_refilled) * rate)
        self._bytes_refilled = now
        self._byte_tokens = tokens = tokens - n
        return -tokens / rate if tokens < 0 else 0.0

    def _throttle(self, reason: str, seconds: float) -> None:
        self.throttled += 1
        self.metrics.inc(f"throttled_{reason}")
        self.metrics.limited_warning("client.throttled", rate_key=f"client.throttled.{reason}", id=self.id,
                                     peer=self.peer, reason=reason, pauses=self.throttled,
                                     seconds=round(seconds, 3))

    def _gate(self, frame: bytes) -> bool:
        """Before a frame is decoded, it pays its token: with none left it is dropped unparsed (a flood
        costs framing, not parsing). A frame that may be a ping or negotiation passes free (it is
        answered); if it turns out to be an event, it pays when routed (`_free`)."""
        if self._take_token(self._loop.time()):
            return True
        head = frame[:512]
        if b"t-x-c-t" in head or b"t-x-takp" in head:
            self._free += 1
            return True
        self._rate_drop()
        return False

    @staticmethod
    def _looks_control(ev: Event) -> bool:
        text = " ".join((ev.uid, ev.type, ev.how, *ev.attrs.values()))
        return "t-x-c-t" in text or "t-x-takp" in text

    def _rate_drop(self) -> None:
        self._limited = True
        self._drops += 1

    def _count_drops(self) -> None:
        """The rate drops of one read: one counter update and at most one (rate-limited) log line."""
        n, self._drops = self._drops, 0
        if n:
            self.rate_dropped += n
            self.metrics.inc("dropped_rate", n)
            self.metrics.limited_warning("client.rate_limited", id=self.id, peer=self.peer,
                                         dropped=self.rate_dropped, per_s=self._limits.events_per_s_per_client)

    async def _sleep(self, seconds: float) -> None:
        """Do not read for `seconds`; close()/abort() end it at once. A future and a timer, not a
        task per pause (`wait_for` made one: ~15 pauses a second in the soak)."""
        fut = self._pause_fut = self._loop.create_future()
        timer = self._loop.call_later(seconds, self._end_pause)
        try:
            await fut
        finally:
            timer.cancel()
            self._pause_fut = None

    def _end_pause(self) -> None:
        fut = self._pause_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- tasks ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve this client until it leaves, misbehaves or the server stops."""
        logs.info(
            "client.open", id=self.id, peer=self.peer, listener=self.listener,
            cn=self.cert_cn, groups=self.groups,
        )
        self._snapshot = [weakref.ref(item) for item in self._router.join(self)]
        self.conn.start(time.time())
        self._flush_conn()  # the offer: held behind the snapshot (negotiation must follow the picture)
        self._arm_watchdog()
        writer_task = asyncio.create_task(self._write_loop(), name=f"kestrel-writer-{self.id}")
        reason = "eof"
        try:
            reason = await self._read_loop()
        except (ConnectionError, OSError) as exc:
            reason = f"error:{type(exc).__name__}"
        except Exception as exc:  # a bug must cost one client, not the server
            reason = "internal_error"
            logs.warning("client.internal_error", id=self.id, peer=self.peer, reason=repr(exc)[:200])
        finally:
            self._count_drops()
            if not self.closed:
                self.closed = True
                self.close_reason = reason
                self._router.leave(self)
                if reason in ("bad_input", "oversize"):
                    self.metrics.inc(f"closed_{reason}")
                logs.info(
                    "client.close", id=self.id, peer=self.peer, reason=reason,
                    received=self.received, errors=self.errors, rate_dropped=self.rate_dropped or None,
                )
            self._stop_watchdog()
            self._wake.set()
            writer_task.cancel()
            try:
                await writer_task
            except (asyncio.CancelledError, ConnectionError, OSError) as exc:
                exc.__traceback__ = None  # kept by the task: its traceback (this frame) would make a cycle
            if self.close_reason == "eof":
                self._writer.close()
            else:
                self._writer.transport.abort()
            self._drop_buffers()

    def _drop_buffers(self) -> None:
        """Closed: keep nothing big, and leave no reference cycle. `conn.gate` (a bound method of this
        session) and the exception the StreamReader keeps (a reset: its traceback holds this
        session's frames) are cycles: without breaking them a closed session lives on, with its read
        buffer and a pending event of up to max_event_bytes, until the cyclic GC's next full pass
        (measured: ~250 closed huge-event senders, ~90 MB, in a 30 s soak)."""
        self.conn.gate = None
        exc = self._reader.exception()
        if exc is not None:
            exc.__traceback__ = None
        self.conn.discard()
        self._out.clear()
        self._out_bytes = 0
        self._held.clear()
        self._latest.clear()
        self._snapshot = []

    async def _read_loop(self) -> str:
        read, chunk = self._reader.read, self._limits.read_chunk
        small = min(chunk, LIMITED_READ)
        route, conn, turn = self._router.route, self.conn, _big_turn(self._loop)
        limited = False  # the last read dropped events for rate: read a little at a time
        while not self.closed:
            data = await read(small if limited else chunk)
            if not data:
                return "eof"
            if conn.pending + len(data) > BIG_WORK:
                async with turn:
                    closing = self._on_read(data, route)
                    await asyncio.sleep(0)  # hold the turn past this iteration: the next big read runs in a later one
            else:
                closing = self._on_read(data, route)
            if closing is not None:
                return closing
            pause, why = self._owed, "bytes"
            limited, self._limited = self._limited, False
            if limited and self._pause() > pause:
                pause, why = self._pause(), "rate"
            if pause > 0:
                # Over its event or byte rate: stop reading this socket for a while (TCP pushes back on
                # the sender), so a flood costs at most one small read per pause, not all it can send.
                self._throttle(why, pause)
                await self._sleep(pause)
        return self.close_reason or "closed"

    def _on_read(self, data: bytes, route: Callable[[Event, Session, frozenset[str]], int]) -> str | None:
        """Frame, decode and route what one read brought; the reason to close, or None."""
        conn, groups = self.conn, self.groups
        now = self._last_rx = self._loop.time()
        self._owed = self._charge_bytes(now, len(data))
        frames = conn.frames
        items = conn.receive_data(data, time.time())
        if not conn.pending:
            self._partial_since = None
        elif self._partial_since is None or conn.frames != frames:
            self._partial_since = now  # a new event began in this read
            if self._watchdog is not None and self._watchdog.when() > now + self._limits.incomplete_event_timeout_s:
                self._stop_watchdog()
                self._arm_watchdog()
        self._flush_conn(direct=True)  # pongs and the negotiation answer, in the order they were made
        for item in items:
            if isinstance(item, ProtocolError):
                self.errors += 1
                if not item.fatal:
                    self.metrics.inc("dropped_invalid")
                if item.fatal:  # one per connection: a reconnecting abuser is rate-limited globally
                    self.metrics.limited_warning(
                        "client.bad_input", rate_key="client.bad_input.fatal", id=self.id, peer=self.peer,
                        reason=item.reason, fatal=True, errors=self.errors,
                    )
                elif self.errors <= LOG_FIRST_ERRORS or self.errors % 1000 == 0:
                    logs.warning(
                        "client.bad_input", id=self.id, peer=self.peer, reason=item.reason,
                        fatal=item.fatal, errors=self.errors,
                    )
                if item.fatal:
                    return "oversize" if "cap" in item.reason else "bad_input"
            elif self._free and self._looks_control(item) and not self._take_token(now):
                self._rate_drop()  # passed the gate free as a "ping", but is an event
            else:
                self.received += 1
                route(item, self, groups)
                if self.closed:
                    return self.close_reason or "closed"
        self._free = 0
        self._count_drops()
        return None

    def _pause(self) -> float:
        """Seconds until the bucket holds a second's worth of tokens again (at most 1 s)."""
        lim = self._limits
        target = min(float(lim.events_burst_per_client), lim.events_per_s_per_client)
        return max(0.0, min(1.0, (target - self._tokens) / lim.events_per_s_per_client))

    def _flush_conn(self, direct: bool = False) -> None:
        out = self.conn.data_to_send()
        if not out:
            return
        if direct and self._holding and not self.closed and not self._transport.is_closing():
            # Our own pong / negotiation answer during the join snapshot: written between two
            # snapshot batches (each write holds whole messages), not behind the whole picture.
            self._transport.write(out)
            return
        self.send(out)

    async def _write_loop(self) -> None:
        w = self._writer
        # 1. The retained picture, encoded from the router's per-format cache, in XML (nothing
        #    has been negotiated yet: the offer comes after it).
        batch: list[bytes] = []
        size = 0
        retained = self._router.retained
        for ref in self._snapshot:
            item = ref()
            if item is None or retained.get(item.event.uid, {}).get(item.groups) is not item:
                continue  # replaced or deleted since the join: the newer state is queued live behind us
            data = item.encoded("xml", self._encode)
            batch.append(data)
            size += len(data)
            if size >= WRITE_BATCH:
                w.write(b"".join(batch))
                batch, size = [], 0
                await w.drain()
                await asyncio.sleep(0)  # paced: the reader (pongs) and other clients run in between
        self._snapshot = []
        if batch:
            w.write(b"".join(batch))
        self._release()
        # 2. Live traffic, in batches.
        out = self._out
        self._direct = True
        while not self.closed:
            if not out:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, size = [], 0
            while out and size < WRITE_BATCH:
                data = out.popleft()
                batch.append(data)
                size += len(data)
            self._out_bytes -= size
            w.write(batch[0] if len(batch) == 1 else b"".join(batch))
            await w.drain()

    def close(self) -> None:
        """Server shutdown: stop reading and close the transport."""
        if not self.closed:
            self.closed = True
            self.close_reason = "shutdown"
            self._router.leave(self)
        self._writer.transport.abort()
        self._wake.set()
        self._end_pause()
        self._stop_watchdog()
