"""An edge site's link to its hub over a standard NATS leaf node, driven by Kestrel from the edge.

Each site has its own NATS server, JetStream domain and stream (`KESTREL_<site>`); the edge's NATS
server is a leaf node of the hub's. Stream `sources`/`mirror` resume slowly after a hub restart, so
the edge drives two durable pull consumers itself (durable: they survive either side restarting):
- out: `to-<hub>` on the edge's own stream: every `link_interval` the items posted here (K-Origin =
  this site) are published into the hub's stream through the leaf (`$JS.<hub>.API`, acknowledged);
  the stream keeps one message per uid, so while the link is slow or cut SA is coalesced to the
  latest per contact; items only in `hold_groups` stay here; an item is acked locally only once
  the hub stored it, so nothing is lost, and `Nats-Msg-Id` = site:seq drops repeats in the hub's
  window;
- in: `to-<edge>` on the hub's stream, reached through `$JS.<hub>.API`: items from elsewhere are
  republished into the edge's stream, numbered by their origin (`K-Src` = @site, `K-Seq` = the
  origin stream's sequence), so every process applies each exactly once however often JetStream
  redelivers it or the link flaps; items past their stale time are dropped, not replayed.
Worst case: one batch (BATCH messages) in memory per direction; a cut link costs a retry every
RETRY seconds per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from kestrel.cluster import wire
from kestrel.server import logs

if TYPE_CHECKING:
    from kestrel.cluster.backplane import Backplane

BATCH = 500
RETRY = 0.5  # seconds between attempts while the hub is unreachable
STATE_EVERY = 2.0  # seconds between consumer-info probes (link state, backlogs)


class _Meter:
    """Bytes per minute, over the last full minute and the current one."""

    def __init__(self) -> None:
        self.total = 0
        self._minutes: deque[tuple[int, int]] = deque(maxlen=2)

    def add(self, n: int) -> None:
        self.total += n
        minute = int(time.time() // 60)
        if self._minutes and self._minutes[-1][0] == minute:
            self._minutes[-1] = (minute, self._minutes[-1][1] + n)
        else:
            self._minutes.append((minute, n))

    def per_minute(self) -> int:
        """Bytes in the last 60 s (the previous minute, or the current one if no previous)."""
        minute = int(time.time() // 60)
        for m, n in reversed(self._minutes):
            if m == minute - 1:
                return n
        return self._minutes[-1][1] if self._minutes and self._minutes[-1][0] == minute else 0


def _stale_of(payload: bytes, headers: dict[str, str]) -> int:
    return wire.event_of(payload, headers).stale


class SiteLink:
    def __init__(self, bp: Backplane) -> None:
        assert bp.cfg.hub is not None
        self.bp = bp
        self.site, self.hub = bp.cfg.site, bp.cfg.hub
        self.interval = bp.cfg.link_interval
        self.hold = bp.cfg.hold_groups
        self.local_js = bp.nc.jetstream()
        self.remote_js = bp.nc.jetstream(domain=self.hub)
        self.out_bytes, self.in_bytes = _Meter(), _Meter()
        self.sent = self.received = self.held = self.echoes = self.expired = self.duplicates = 0
        self.gaps = 0  # messages replaced in the stream before they crossed (coalesced) or expired
        self.state = "down"
        self.backlog_out = self.backlog_in = -1
        self.last_ok = 0.0
        self._last_ok_wall = 0.0
        self._cut_since: float | None = None  # wall time the link last worked before it went down
        self._tasks: list[asyncio.Task[None]] = []
        self._out_sub: Any = None
        self._in_sub: Any = None
        self._closing = False

    async def start(self) -> None:
        for name, coro in (("out", self._out_loop()), ("in", self._in_loop()), ("probe", self._probe_loop())):
            self._tasks.append(asyncio.create_task(coro, name=f"kestrel-link-{name}"))

    async def stop(self) -> None:
        # nats-py's fetch can turn a cancellation into its own timeout: the loops also check _closing.
        self._closing = True
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def status(self) -> dict[str, Any]:
        return {
            "hub": self.hub, "state": self.state, "backlog_out": self.backlog_out, "backlog_in": self.backlog_in,
            "bytes_out_min": self.out_bytes.per_minute(), "bytes_in_min": self.in_bytes.per_minute(),
            "bytes_out": self.out_bytes.total, "bytes_in": self.in_bytes.total, "sent": self.sent,
            "received": self.received, "held": self.held, "coalesced_or_expired": self.gaps,
        }

    def _up(self) -> None:
        if self.state != "up":
            logs.info("link.up", site=self.site, hub=self.hub)
            if self._cut_since is not None:  # live messages of either side during the cut: again
                self.bp.request_replay(self._cut_since)
                self._cut_since = None
        self.state, self.last_ok, self._last_ok_wall = "up", time.monotonic(), time.time()

    def _down(self, why: str) -> None:
        if self.state != "down":
            logs.warning("link.down", site=self.site, hub=self.hub, reason=why[:120])
            if self._last_ok_wall:  # was up: from the last time it worked
                self._cut_since = self._last_ok_wall
        self.state = "down"

    # -- consumers ----------------------------------------------------------------------------------

    async def _bind(self, js: Any, stream: str, durable: str, filt: str) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cc = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
                            deliver_policy=DeliverPolicy.ALL, filter_subject=filt, max_ack_pending=20_000)
        await js.add_consumer(stream, cc, timeout=5)
        return await js.pull_subscribe_bind(durable, stream)

    async def _fetch(self, sub: Any) -> list[Any]:
        try:
            return list(await sub.fetch(BATCH, timeout=max(1.0, self.interval)))
        except TimeoutError:
            return []

    # -- out: this site's items to the hub ----------------------------------------------------------

    async def _out_loop(self) -> None:
        last_seq = 0
        while not self._closing:
            try:
                if self._out_sub is None:
                    self._out_sub = await self._bind(self.local_js, self.bp.stream, f"to-{self.hub}",
                                                     wire.stored_filter(self.site))
                await asyncio.sleep(self.interval)  # the coalescing interval: the stream keeps the latest
                msgs = await self._fetch(self._out_sub)
                for i, m in enumerate(msgs):
                    seq = m.metadata.sequence.stream
                    self.gaps += max(0, seq - last_seq - 1) if last_seq else 0
                    try:
                        await self._send(m, seq)
                    except Exception:
                        for rest in msgs[i:]:  # not stored at the hub: redeliver, in order, later
                            with contextlib.suppress(Exception):
                                await rest.nak(delay=RETRY)
                        raise
                    last_seq = seq
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._down(f"out: {type(exc).__name__}: {exc}")
                await asyncio.sleep(RETRY)

    async def _send(self, m: Any, seq: int) -> None:
        h = dict(m.headers or {})
        if h.get(wire.H_ORIGIN) != self.site:  # came from the hub (or via it): never sent back
            self.echoes += 1
        elif wire.decode_groups(h.get(wire.H_GROUPS, "")) <= self.hold:
            self.held += 1
        else:
            now_ms = int(time.time() * 1000)
            ev = wire.event_of(m.data, h)  # XML inside the site, protobuf over the link
            if ev.stale <= now_ms:
                self.expired += 1
            else:
                data, fmt = wire.payload_of(ev, "proto")
                h.pop(wire.H_FMT, None)
                if fmt == "xml":
                    h[wire.H_FMT] = "xml"
                stale = ev.stale
                h[wire.H_SRC], h[wire.H_SEQ] = f"@{self.site}", str(seq)
                h[wire.H_TTL] = str(wire.ttl_seconds(stale, now_ms))
                h["Nats-Msg-Id"] = f"{self.site}:{seq}"
                subject = f"kst.{self.hub}.s.{m.subject.rsplit('.', 1)[-1]}"
                await self.remote_js.publish(subject, data, headers=h, timeout=5)
                self.sent += 1
                self.out_bytes.add(len(data) + sum(len(k) + len(v) + 4 for k, v in h.items()))
                self._up()
        await m.ack()

    # -- in: the hub's items (and other sites' via the hub) to this site ----------------------------

    async def _in_loop(self) -> None:
        while not self._closing:
            try:
                if self._in_sub is None:
                    self._in_sub = await self._bind(self.remote_js, wire.stream_name(self.hub), f"to-{self.site}",
                                                    wire.stored_filter(self.hub))
                    self._up()
                for m in await self._fetch(self._in_sub):
                    await self._receive(m)
                    self._up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._down(f"in: {type(exc).__name__}: {exc}")
                await asyncio.sleep(RETRY)

    async def _receive(self, m: Any) -> None:
        h = dict(m.headers or {})
        self.in_bytes.add(len(m.data) + sum(len(k) + len(v) + 4 for k, v in h.items()))
        src = h.get(wire.H_SRC, "")
        if h.get(wire.H_ORIGIN) == self.site:
            self.echoes += 1  # ours, stored at the hub: already here
        elif not src.startswith("@"):  # posted at the hub itself: number it by the hub's stream
            h[wire.H_SRC], h[wire.H_SEQ] = f"@{self.hub}", str(m.metadata.sequence.stream)
            await self._republish(m, h)
        else:
            await self._republish(m, h)
        await m.ack()

    async def _republish(self, m: Any, h: dict[str, str]) -> None:
        src, seq = h[wire.H_SRC], int(h[wire.H_SEQ])
        if seq <= self.bp.applied.get(src, 0):
            self.duplicates += 1
            return
        now_ms = int(time.time() * 1000)
        stale = _stale_of(m.data, h)
        if stale <= now_ms:
            self.expired += 1
            return
        h[wire.H_TTL] = str(wire.ttl_seconds(stale, now_ms))
        h.pop("Nats-Msg-Id", None)
        subject = f"kst.{self.site}.s.{m.subject.rsplit('.', 1)[-1]}"
        await self.local_js.publish(subject, m.data, headers=h, timeout=5)
        self.received += 1

    # -- state -------------------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(STATE_EVERY)
            with contextlib.suppress(Exception):
                if self._out_sub is not None:
                    self.backlog_out = (await self._out_sub.consumer_info()).num_pending
            try:
                if self._in_sub is None:
                    continue
                info = await self._in_sub.consumer_info()
                self.backlog_in = info.num_pending
                self._up()
            except Exception as exc:
                self._down(f"probe: {type(exc).__name__}")
