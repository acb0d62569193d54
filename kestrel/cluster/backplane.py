"""One server process on its site's NATS: the others' events in, its clients' events out.

Goal: N processes (and, through `link`, N sites) behave as one TAK server. Each process
- publishes what its clients post (the router's `tap`): retained state and deletions to the site's
  stored subject of that uid (stream `KESTREL_<site>`, one message per subject, TTL = stale), the
  rest (chat, direct messages) to the site's live subject (every site's processes hear it while
  the link is up; held groups use a subject only this site hears);
- hears the site's stored subjects as plain (core) NATS subscribers: the live feed, pushed by the
  server as it arrives (one message per event, no consumer, no flow control: a JetStream push
  consumer that falls behind skips what the stream replaced meanwhile, i.e. intermediate SA);
- reads the site stream with an ordered consumer only to catch up: at start (the retained picture,
  before the listeners open) and after its NATS connection comes back (from the time it was lost);
  meanwhile the live feed is held and applied after it. Stored and live messages feed
  `router.route_remote`, so groups, `<marti><dest>` by callsign or uid, and the join snapshot work
  as inside one process;
- applies each (K-Src, K-Seq) at most once and in order (JetStream delivers at least once; the
  catch-up and the live feed overlap);
- while its NATS is unreachable keeps serving its own clients and holds what they post: the outbox
  (live messages, bounded) and `unconfirmed` (stored messages the stream has not acknowledged yet,
  coalesced per uid; the acks come back asynchronously to an inbox, never awaited per message);
  on reconnect both are published once, oldest first;
- keeps the live messages (chat, direct messages) it published in the last RECENT_LIVE_S (at most
  OUTBOX_LIVE, none past its stale time): after a cut (an edge's link back, this process back on its
  NATS) a process asks everyone on `kst.replay` to publish theirs since the cut again (asked again
  after a few seconds: the other side may reconnect later); receivers apply each live (K-Src,
  K-Seq) once, so what crossed before the cut is not delivered twice and what did not is delivered
  once, late (not in order with what came after the cut).
Worst cases: memory O(retained uids) for `unconfirmed` while cut off, `OUTBOX_LIVE` live messages
held plus as many kept for replay; one decode + one route per message from the other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from kestrel.cluster import wire
from kestrel.cluster.conn import connect
from kestrel.cluster.errors import ClusterError
from kestrel.cot.event import Event
from kestrel.server import detail as detail_mod
from kestrel.server import logs
from kestrel.server.router import DELETE_TYPE, NOT_RETAINED, Router

OUTBOX_LIVE = 10_000  # live (not stored) messages held while cut off; older ones are dropped
RECENT_LIVE_S = 3600.0  # live messages kept this long for a replay after a cut (and at most OUTBOX_LIVE)
REPLAY_AGAIN = (0.0, 3.0, 10.0)  # seconds after a cut heals when the replay is asked (again)
REPLAY_GRACE = 5.0  # seconds before the cut was noticed that the replay also covers
RESYNC_ATTEMPTS = 30  # catch-up attempts after a reconnect, 1 s apart
LIVE_SEEN = 20_000  # live (K-Src, K-Seq) remembered per source to drop replayed repeats
CATCH_UP_TIMEOUT = 30.0
CONNECT_TIMEOUT = 8.0  # seconds for the first connection to the site's NATS server  # seconds to replay the stored picture at start


@dataclass(slots=True)
class ClusterConfig:
    url: str
    site: str = "kestrel"
    hub: str | None = None  # an edge site: the hub's site name (= its JetStream domain)
    hold_groups: frozenset[str] = frozenset()  # items only in these groups never leave this site
    link_interval: float = 1.0  # seconds between cross-site batches: SA coalesced per contact per interval
    wire_format: str = "proto"  # payload inside the site: "proto" (TAK v1) or "xml" (`--workers`: CPU)


@dataclass(slots=True)
class Counters:
    published: int = 0
    published_bytes: int = 0
    applied: int = 0
    duplicates: int = 0
    expired: int = 0
    older: int = 0
    bad: int = 0
    outbox_dropped: int = 0
    republished: int = 0
    replayed: int = 0  # live messages published again on a replay request
    live_repeats: int = 0  # live messages received again (replays) and dropped


@dataclass(slots=True)
class _Recent:
    t: float  # wall seconds when published
    stale_ms: int
    subject: str
    payload: bytes
    headers: dict[str, str]


class _SeenSeqs:
    """The last LIVE_SEEN sequence numbers of one source (a set with a bounded memory)."""

    def __init__(self) -> None:
        self.set: set[int] = set()
        self.order: deque[int] = deque()

    def add(self, seq: int) -> bool:
        """False if `seq` was seen already."""
        if seq in self.set:
            return False
        self.set.add(seq)
        self.order.append(seq)
        if len(self.order) > LIVE_SEEN:
            self.set.discard(self.order.popleft())
        return True


@dataclass(slots=True)
class _Pending:
    seq: int
    subject: str
    payload: bytes
    headers: dict[str, str]
    sent: bool = False


@dataclass(slots=True)
class RemoteContact:
    uid: str
    callsign: str
    src: str


@dataclass(slots=True)
class _Out:
    subject: str
    payload: bytes
    headers: dict[str, str]
    key: str | None = None  # stored subject: superseded in `unconfirmed` by a newer one
    seq: int = 0
    held: bool = False  # queued while cut off: dropped if superseded before it is sent (coalesced)


class Backplane:
    """Attach to a `Server` before `start()`: `server.backplane = Backplane(cfg, server.router, ...)`."""

    def __init__(self, cfg: ClusterConfig, router: Router, clients: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.time) -> None:
        wire.check_site(cfg.site)
        if cfg.hub is not None:
            wire.check_site(cfg.hub)
        self.cfg = cfg
        self.router = router
        self.node = "n:" + secrets.token_hex(4)
        self._clients = clients
        self._clock = clock
        self.stream = wire.stream_name(cfg.site)
        self.nc: Any = None
        self.js: Any = None
        self.connected = False
        self.counters = Counters()
        self.contacts: dict[str, RemoteContact] = {}  # the other processes' contacts, from their SA
        self.applied: dict[str, int] = {}  # K-Src -> highest K-Seq applied (stored messages)
        self.stream_seq = 0  # last message of the site stream seen
        self._seq = 0  # this process's numbering of what it publishes
        self._queue: deque[_Out] = deque()  # to publish, in order (the outbox while cut off)
        self._live_held = 0
        self.unconfirmed: dict[str, _Pending] = {}  # stored subject -> latest own message not seen back
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._caught_up = asyncio.Event()
        self._catching_up = True  # the live feed of stored subjects is held until the catch-up is done
        self._ack_prefix = f"_INBOX.kst.{self.node[2:]}."  # + our K-Seq: the stream's PubAck comes back there
        self._in_flight: dict[int, str] = {}  # K-Seq -> stored subject, published and not acknowledged yet
        self._held_stored: list[tuple[bytes, dict[str, str] | None, str]] = []
        self._recent: deque[_Recent] = deque(maxlen=OUTBOX_LIVE)  # own live messages, for a replay
        self._live_seen: dict[str, _SeenSeqs] = {}
        self._down_since: float | None = None  # wall time the NATS connection was lost
        self.link: Any = None
        router.tap = self._on_local

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, make sure the site stream exists, replay the stored picture. ClusterError."""
        from nats.js.api import DiscardPolicy, StorageType, StreamConfig

        # The client retries forever once connected; the first connection gets CONNECT_TIMEOUT.
        self.nc = await connect(
            self.cfg.url, CONNECT_TIMEOUT, "--cluster",
            name=f"kestrel {self.cfg.site} {self.node} pid {os.getpid()}",
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            ping_interval=5, max_outstanding_pings=2,
            disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect, error_cb=self._on_error,
        )
        self.connected = True
        self.js = self.nc.jetstream()
        sc = StreamConfig(
            name=self.stream, subjects=[wire.stored_filter(self.cfg.site)], max_msgs_per_subject=1,
            allow_msg_ttl=True, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            max_msgs=self.router_limit(), duplicate_window=120.0,
        )
        try:
            try:
                await self.js.add_stream(sc)
            except Exception as exc:
                if "already in use" not in str(exc):
                    raise
                await self.js.update_stream(sc)
            for subject in (wire.LIVE_ALL_SITES, wire.held_subject(self.cfg.site)):
                self._subs.append(await self.nc.subscribe(subject, cb=self._on_live))
            self._subs.append(await self.nc.subscribe(wire.STATUS_SUBJECT, cb=self._on_status))
            self._subs.append(await self.nc.subscribe(wire.REPLAY_SUBJECT, cb=self._on_replay))
            self._subs.append(await self.nc.subscribe(self._ack_prefix + "*", cb=self._on_ack))
            self._subs.append(await self.nc.subscribe(wire.stored_filter(self.cfg.site), cb=self._on_stored_live,
                                                      pending_bytes_limit=512 << 20))
            await self._catch_up_from(start_seq=self.stream_seq + 1)
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(f"--cluster {self.cfg.url}: JetStream not usable ({type(exc).__name__}: {exc}); "
                               "the NATS server needs `jetstream` enabled") from None
        self._tasks.append(asyncio.create_task(self._publisher(), name="kestrel-cluster-publisher"))
        if self.cfg.hub is not None:
            from kestrel.cluster.link import SiteLink

            self.link = SiteLink(self)
            await self.link.start()
        logs.info("cluster.ready", site=self.cfg.site, node=self.node, url=self.cfg.url, hub=self.cfg.hub,
                  retained=len(self.router.retained), stream_seq=self.stream_seq)

    def router_limit(self) -> int:
        return max(self.router._max_retained * 2, 1000)

    async def _catch_up_from(self, start_seq: int | None = None, start_time: float | None = None) -> None:
        """Apply the site stream from `start_seq` (or wall time `start_time`) up to its last message now,
        with an ordered consumer (then dropped); the live feed held meanwhile is applied after it."""
        import datetime

        from nats.js.api import ConsumerConfig, DeliverPolicy

        self._catching_up = True
        sub = None
        try:
            info = await self.js.stream_info(self.stream)
            last = info.state.last_seq
            if info.state.messages == 0 or last < (start_seq or 0):
                return
            if start_time is not None:
                when = datetime.datetime.fromtimestamp(start_time, datetime.UTC)
                cc = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=when)
            else:
                cc = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq or 1)
            self._catch_up_to = last
            self._caught_up.clear()
            self._catch_seq = 0
            sub = await self.js.subscribe(wire.stored_filter(self.cfg.site), stream=self.stream, cb=self._on_stored,
                                          ordered_consumer=True, idle_heartbeat=2.0, config=cc)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CATCH_UP_TIMEOUT
            while self._catch_seq < last:
                # The last message may be gone (TTL, replaced): then the consumer has nothing pending.
                with contextlib.suppress(Exception):
                    ci = await sub.consumer_info()
                    if ci.num_pending == 0 and sub.pending_msgs == 0:
                        break
                if loop.time() > deadline:
                    logs.warning("cluster.catch_up_slow", applied_to=self._catch_seq, last=last)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._caught_up.wait(), 0.2)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            held, self._held_stored = self._held_stored, []
            self._catching_up = False
            for payload, headers, subject in held:  # arrived meanwhile: the repeats are dropped by number
                self.apply(payload, headers, subject)

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_queue(), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 3.0)
        self.connected = False
        c = self.counters
        logs.info("cluster.stopped", node=self.node, outbox=len(self._queue), unconfirmed=len(self.unconfirmed),
                  published=c.published, applied=c.applied, duplicates=c.duplicates)

    # -- out: what our clients post ------------------------------------------------------------------

    def _on_local(self, event: Event, groups: frozenset[str], addr: detail_mod.Addressing,
                  identity: str | None) -> dict[str, bytes] | None:
        """Router tap (synchronous): queue an accepted event for the other processes and sites.
        Returns the XML it encoded (the router sends those bytes to XML clients, not encoding again)."""
        now_ms = int(self._clock() * 1000)
        self._seq += 1
        env = wire.Envelope(event, groups, self.cfg.site, self.node, self._seq, identity)
        if event.type == DELETE_TYPE and addr.link_uids:
            # A deletion replaces what it deletes in the stream (same subject) and outlives it.
            hit = {u: self._scopes_hit(u, groups) for u in addr.link_uids}
            until = max([event.stale, now_ms + 3_600_000] + [
                r.event.stale for u in addr.link_uids for r in self.router.retained.get(u, {}).values()])
            seed = None
            for uid in addr.link_uids:
                for scope in hit[uid] or [groups]:  # on the subject of each item it deletes
                    seed = self._queue_stored(env, uid, scope, wire.ttl_seconds(until, now_ms))
            return seed
        if not addr.addressed and not event.type.startswith(NOT_RETAINED) and event.stale > now_ms:
            ttl = wire.ttl_seconds(event.stale, now_ms)
            for scope in self._scopes_hit(event.uid, groups):  # items of other groups it replaces
                if scope != groups:
                    self._queue_stored(env, event.uid, scope, ttl)
            return self._queue_stored(env, event.uid, groups, ttl)
        payload, headers = wire.encode(env, fmt=self.cfg.wire_format)
        if not self.connected and self._live_held >= OUTBOX_LIVE:
            self.counters.outbox_dropped += 1
            return None
        held = bool(self.cfg.hold_groups) and groups <= self.cfg.hold_groups
        subject = wire.held_subject(self.cfg.site) if held else wire.live_subject(self.cfg.site)
        self._queue.append(_Out(subject, payload, headers))
        self._recent.append(_Recent(now_ms / 1000, event.stale, subject, payload, headers))
        self._live_held += not self.connected
        self._wake.set()
        return wire.xml_seed(payload, headers)

    def _scopes_hit(self, uid: str, groups: frozenset[str]) -> list[frozenset[str]]:
        """The groups of `uid`'s retained items a write or deletion from `groups` replaces."""
        return [s for s in self.router.retained.get(uid, {}) if not s.isdisjoint(groups)]

    def _queue_stored(self, env: wire.Envelope, uid: str, scope: frozenset[str],
                      ttl_s: int) -> dict[str, bytes] | None:
        subject = wire.stored_subject(self.cfg.site, uid, scope)
        payload, headers = wire.encode(env, ttl_s=ttl_s, fmt=self.cfg.wire_format)
        self.unconfirmed.pop(subject, None)  # re-insert: dict order = publish order
        self.unconfirmed[subject] = _Pending(env.seq, subject, payload, headers)
        self._queue.append(_Out(subject, payload, headers, subject, env.seq, not self.connected))
        self._wake.set()
        return wire.xml_seed(payload, headers)

    async def _publisher(self) -> None:
        """One task, one queue: publish in order while connected; hold everything while not."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush_queue()
            except Exception as exc:  # cut mid-batch: what was not sent stays queued / unconfirmed
                logs.warning("cluster.publish_error", reason=f"{type(exc).__name__}: {exc}"[:200])

    async def _flush_queue(self) -> None:
        q = self._queue
        while q and self.connected:
            out = q[0]
            if out.key is not None:
                p = self.unconfirmed.get(out.key)
                if out.held and (p is None or p.seq != out.seq):  # superseded while cut off: coalesced
                    q.popleft()
                    continue
                if p is not None and p.seq == out.seq:
                    p.sent = True
            if out.key is not None:  # stored: the stream acknowledges to our inbox (not awaited here)
                self._in_flight[out.seq] = out.key
                await self.nc.publish(out.subject, out.payload, reply=f"{self._ack_prefix}{out.seq}",
                                      headers=out.headers)
            else:
                await self.nc.publish(out.subject, out.payload, headers=out.headers)
            q.popleft()
            self.counters.published += 1
            self.counters.published_bytes += len(out.payload)
        if not self.connected:
            return
        self._live_held = 0

    # -- in: what the other processes (and sites) posted ---------------------------------------------

    async def _on_stored(self, msg: Any) -> None:
        """The catch-up's ordered consumer."""
        # The stream sequence from the reply subject (Msg.metadata also builds a datetime: per message).
        tokens = Msg.Metadata._get_metadata_fields(msg.reply)
        seq = int(tokens[5] if len(tokens) == 9 else tokens[Msg.Ack.StreamSeq])  # v1 | v2 (domain)
        self._catch_seq = seq
        self.stream_seq = max(self.stream_seq, seq)
        self.apply(msg.data, msg.headers, msg.subject)
        if seq >= getattr(self, "_catch_up_to", 0):
            self._caught_up.set()

    async def _on_ack(self, msg: Any) -> None:
        """The stream stored one of ours (PubAck {"stream", "seq"}): it no longer needs resending."""
        try:
            seq = int(msg.subject.rsplit(".", 1)[1])
        except (ValueError, IndexError):
            self.counters.bad += 1
            return
        subject = self._in_flight.pop(seq, None)
        try:
            ack = json.loads(msg.data)  # a "no responders" status has no body: not stored
        except ValueError:
            ack = {"error": f"status {msg.headers.get('Status') if msg.headers else '?'}"}
        if "error" in ack or subject is None:  # not stored (e.g. the stream is gone): resent on reconnect
            if "error" in ack:
                self.metrics_not_stored = getattr(self, "metrics_not_stored", 0) + 1
                if self.metrics_not_stored <= 10 or self.metrics_not_stored % 1000 == 0:
                    logs.warning("cluster.not_stored", reason=str(ack.get("error"))[:200],
                                 count=self.metrics_not_stored)
            return
        self.stream_seq = max(self.stream_seq, int(ack.get("seq", 0)))
        p = self.unconfirmed.get(subject)
        if p is not None and p.seq <= seq:
            del self.unconfirmed[subject]

    async def _on_stored_live(self, msg: Any) -> None:
        """The live feed of the stored subjects (core NATS: in order per publisher, nothing skipped)."""
        if self._catching_up:
            self._held_stored.append((msg.data, msg.headers, msg.subject))
            return
        self.apply(msg.data, msg.headers, msg.subject)

    def apply(self, payload: bytes, headers: dict[str, str] | None, subject: str = "") -> bool:
        """Apply one stored message exactly once (by K-Src + K-Seq). True if it was routed.
        Own messages and repeats are recognised from the headers, without decoding the event."""
        try:
            src, seq = wire.numbering(headers)
        except ValueError:
            self.counters.bad += 1
            return False
        if src == self.node:  # ours, now stored: no need to send it again
            p = self.unconfirmed.get(subject)
            if p is not None and p.seq <= seq:
                del self.unconfirmed[subject]
            return False
        if seq <= self.applied.get(src, 0):
            self.counters.duplicates += 1
            return False
        try:
            env = wire.decode(payload, headers)
        except Exception:  # malformed: counted and skipped
            self.counters.bad += 1
            return False
        self.applied[src] = seq
        ev = env.event
        now_ms = int(self._clock() * 1000)
        if ev.stale <= now_ms:
            self.counters.expired += 1
            return False
        current = self.router.find(ev.uid, env.groups)
        if current is not None and current.event.time > ev.time:
            self.counters.older += 1  # posted on both sides while cut off: the newer one wins
            return False
        self.counters.applied += 1
        self._learn(env)
        self.router.route_remote(ev, env.groups, env.identity, wire.xml_seed(payload, headers))
        return True

    def _learn(self, env: wire.Envelope) -> None:
        """The other processes' contacts (for --status). Read once per uid: not again for every SA."""
        ev = env.event
        if ev.type.startswith("a-") and ev.uid not in self.contacts:
            addr = detail_mod.inspect(ev.detail)
            if addr.callsign and not addr.parent_link:
                self.contacts[ev.uid] = RemoteContact(ev.uid, addr.callsign, env.src)

    async def _on_live(self, msg: Any) -> None:
        try:
            src, seq = wire.numbering(msg.headers)
        except ValueError:
            self.counters.bad += 1
            return
        if src == self.node:
            return
        seen = self._live_seen.get(src)
        if seen is None:
            seen = self._live_seen[src] = _SeenSeqs()
        if not seen.add(seq):  # a replay of what we had
            self.counters.live_repeats += 1
            return
        try:
            env = wire.decode(msg.data, msg.headers)
        except Exception:
            self.counters.bad += 1
            return
        if env.event.stale <= int(self._clock() * 1000):  # replayed after its stale time
            self.counters.expired += 1
            return
        self.counters.applied += 1
        self.router.route_remote(env.event, env.groups, env.identity, wire.xml_seed(msg.data, msg.headers))

    # -- replay of live messages after a cut ----------------------------------------------------------

    def request_replay(self, since: float) -> None:
        """Ask every process (this one too) to publish its live messages since `since` (wall s) again,
        now and REPLAY_AGAIN seconds later (the other side of a cut may come back later than us)."""
        self._tasks.append(asyncio.create_task(self._ask_replay(since), name="kestrel-cluster-replay"))
        self._tasks[:] = [t for t in self._tasks if not t.done()]

    @property
    def replay_asking(self) -> bool:
        """A replay request is still to be (re)sent."""
        return any(not t.done() and t.get_name() == "kestrel-cluster-replay" for t in self._tasks)

    async def _ask_replay(self, since: float) -> None:
        body = json.dumps({"since": since - REPLAY_GRACE, "from": self.node}).encode()
        t0 = asyncio.get_running_loop().time()
        for delay in REPLAY_AGAIN:
            await asyncio.sleep(max(0.0, t0 + delay - asyncio.get_running_loop().time()))
            if self.connected:
                with contextlib.suppress(Exception):
                    await self.nc.publish(wire.REPLAY_SUBJECT, body)

    async def _on_replay(self, msg: Any) -> None:
        try:
            since = float(json.loads(msg.data)["since"])
        except (ValueError, KeyError, TypeError):
            self.counters.bad += 1
            return
        now = self._clock()
        recent = self._recent
        while recent and (now - recent[0].t > RECENT_LIVE_S):
            recent.popleft()
        now_ms = int(now * 1000)
        n = 0
        for r in recent:
            if r.t >= since and r.stale_ms > now_ms:
                self._queue.append(_Out(r.subject, r.payload, r.headers))
                n += 1
        if n:
            self.counters.replayed += n
            logs.info("cluster.replay", node=self.node, since=round(since, 3), messages=n)
            self._wake.set()

    # -- connection state -----------------------------------------------------------------------------

    async def _on_disconnect(self) -> None:
        if self.connected:
            logs.warning("cluster.disconnected", url=self.cfg.url, node=self.node)
            self._down_since = self._clock()
        self.connected = False

    async def _on_reconnect(self) -> None:
        # Stored messages sent but never seen back may have died with the connection: send them
        # again, oldest first, ahead of what was queued meanwhile (receivers drop repeats by seq).
        self._in_flight.clear()  # acks of what died with the connection never come: resent below
        resend = [p for p in self.unconfirmed.values() if p.sent]
        resend.sort(key=lambda p: p.seq)
        for p in reversed(resend):
            self._queue.appendleft(_Out(p.subject, p.payload, p.headers, p.subject, p.seq, True))
        self.counters.republished += len(resend)
        self.connected = True
        logs.info("cluster.reconnected", url=self.cfg.url, node=self.node, outbox=len(self._queue))
        self._wake.set()
        if self._down_since is not None:  # what the others published meanwhile never reached us
            self.request_replay(self._down_since)
            self._tasks.append(asyncio.create_task(self._resync(self._down_since), name="kestrel-cluster-resync"))
            self._down_since = None

    async def _resync(self, since: float) -> None:
        """Catch up from the cut; a restarted server's JetStream may need a moment: retry (bounded)."""
        for attempt in range(RESYNC_ATTEMPTS):
            if not self.connected:
                return  # cut again: the next reconnect starts a new resync
            try:
                await self._catch_up_from(start_time=since - REPLAY_GRACE)
                return
            except Exception as exc:
                logs.warning("cluster.resync_error", attempt=attempt + 1,
                             reason=f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(1.0)

    async def _on_error(self, exc: Exception) -> None:
        # A slow consumer (the client dropped messages it could not hand to us in time) must be seen.
        self._errors = getattr(self, "_errors", 0) + 1
        log = logs.warning if self._errors <= 10 or self._errors % 1000 == 0 else logs.debug
        log("cluster.nats_error", reason=f"{type(exc).__name__}: {exc}"[:200], count=self._errors)

    # -- status ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "site": self.cfg.site, "node": self.node, "pid": os.getpid(), "clients": self._clients(),
            "retained": len(self.router.retained), "contacts_remote": len(self.contacts),
            "nats": "up" if self.connected else "down", "outbox": len(self._queue),
            "unconfirmed": len(self.unconfirmed), "stream_seq": self.stream_seq,
            "published": self.counters.published, "applied": self.counters.applied,
            "duplicates": self.counters.duplicates, "replayed": self.counters.replayed,
            "live_repeats": self.counters.live_repeats,
        }
        if self.link is not None:
            st["link"] = self.link.status()
        return st

    async def _on_status(self, msg: Any) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, json.dumps(self.status()).encode())

