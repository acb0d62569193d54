"""A hub and an edge site, each with its own nats-server and JetStream domain, the edge a standard
leaf node of the hub. The test stops the hub's nats-server for 10 s; both sides post markers
meanwhile; after the restart each side has the other's markers exactly once, expired ones are not
replayed, and held groups stay at the edge; direct messages sent both ways during the cut arrive
once after it."""

from __future__ import annotations

import asyncio
import collections
import xml.etree.ElementTree as ET
from pathlib import Path

from kestrel.cluster.natsd import free_port
from kestrel.server.config import ListenerConfig
from tests.cluster_support import NEEDS_NATS, cluster_server, natsd, running
from tests.test_cluster import marker
from tests.test_server_support import Client, chat, eventually, run, sa, uid_of

pytestmark = NEEDS_NATS
OUTAGE = 10.0  # seconds the hub's NATS server is down (the scenario, not a synchronisation)
RESYNC = 30.0  # the goal: both sides converge within this after the link returns


class Seen:
    """Every marker a client receives, counted (a background reader)."""

    def __init__(self, client: Client) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self.chats: list[str] = []
        self.task = asyncio.create_task(self._read(client))

    async def _read(self, client: Client) -> None:
        while True:
            ev: ET.Element = await client.recv_events(3600)
            if ev.get("type") == "b-m-p-s-m":
                self.count[uid_of(ev)] += 1
            elif ev.get("type") == "b-t-f":
                remarks = ev.find("detail/remarks")
                self.chats.append(remarks.text if remarks is not None and remarks.text else "")


def test_hub_and_edge_resync_after_cut(tmp_path: Path) -> None:
    leaf = free_port()
    with natsd(tmp_path, "hub", domain="hub", leaf_listen=leaf) as hub_nats, \
            natsd(tmp_path, "edge", domain="edge", leaf_remote=f"nats-leaf://127.0.0.1:{leaf}") as edge_nats:

        async def scenario() -> None:
            listeners = (ListenerConfig("tcp", "tcp", "127.0.0.1", 0, ("Blue",)),
                         ListenerConfig("local", "tcp", "127.0.0.1", 0, ("EdgeOnly",)))
            h = cluster_server(tmp_path / "h", hub_nats.url, "hub", listeners[0])
            e = cluster_server(tmp_path / "e", edge_nats.url, "edge", *listeners, hub="hub",
                               hold_groups=frozenset({"EdgeOnly"}), link_interval=0.2)
            async with running(h), running(e):
                ch = await Client.connect(f"tcp://127.0.0.1:{h.ports['tcp']}")
                ce = await Client.connect(f"tcp://127.0.0.1:{e.ports['tcp']}")
                ce_local = await Client.connect(f"tcp://127.0.0.1:{e.ports['local']}")
                seen_h, seen_e = Seen(ch), Seen(ce)

                # The link works both ways.
                await ch.send(marker("h-0"))
                await ce.send(marker("e-0"))
                await ce_local.send(marker("e-held"))  # EdgeOnly: never crosses
                await eventually(lambda: seen_e.count["h-0"] == 1 and seen_h.count["e-0"] == 1, RESYNC)
                # Live traffic crosses too while the link is up: a direct message by callsign, hub -> edge.
                await ce.send(sa("uid-edge1", "EDGE1"))
                await eventually(lambda: "uid-edge1" in h.router.retained, RESYNC)
                await ch.send(chat("uid-hub1", "HUB1", "EDGE1", "hello edge"))
                await eventually(lambda: seen_e.chats == ["hello edge"], RESYNC)
                await ch.send(sa("uid-hub1", "HUB1"))  # so the edge can address HUB1 by callsign
                await eventually(lambda: "uid-hub1" in e.router.retained, RESYNC)

                # Cut: the hub's NATS server goes away for OUTAGE seconds; both sides keep serving.
                hub_nats.stop()
                await eventually(lambda: not h.backplane.connected and e.backplane.link.state == "down", RESYNC)
                await ce.send(marker("e-short", stale=2))  # stale long before the link returns
                for i in range(1, 6):
                    await ch.send(marker(f"h-{i}"))
                    await ce.send(marker(f"e-{i}"))
                # Direct messages both ways while cut: held, delivered once when the link is back.
                await ch.send(chat("uid-hub1", "HUB1", "EDGE1", "hub during the cut"))
                await ce.send(chat("uid-edge1", "EDGE1", "HUB1", "edge during the cut"))
                await asyncio.sleep(OUTAGE)
                hub_nats.wait_port_free()
                hub_nats.start()

                # Back: each side gets the other's markers, exactly once, within RESYNC seconds.
                want_e = {f"h-{i}" for i in range(6)}
                want_h = {f"e-{i}" for i in range(6)}
                await eventually(lambda: want_e <= set(seen_e.count) and want_h <= set(seen_h.count), RESYNC)
                # A marker posted after the resync is seen after everything before it (same path).
                await ce.send(marker("e-after"))
                await ch.send(marker("h-after"))
                await eventually(lambda: seen_h.count["e-after"] and seen_e.count["h-after"], RESYNC)
                await eventually(lambda: "hub during the cut" in seen_e.chats and seen_h.chats, RESYNC)
                # Replays are asked again a few seconds after the link returns: wait for the last one
                # (each process logs what it published again) before counting repeats.
                await eventually(lambda: not e.backplane.replay_asking and not h.backplane.replay_asking
                                 and e.backplane.counters.live_repeats >= 1
                                 and h.backplane.counters.live_repeats >= 1, RESYNC)
                assert seen_e.chats == ["hello edge", "hub during the cut"]
                assert seen_h.chats == ["edge during the cut"]
                assert {u: n for u, n in seen_h.count.items() if n != 1} == {}
                assert {u: n for u, n in seen_e.count.items() if n != 1} == {}
                assert set(seen_h.count) == want_h | {"e-after"}  # no e-short (expired), no e-held
                assert set(seen_e.count) == want_e | {"h-after"}
                assert "e-short" not in h.router.retained and "e-held" not in h.router.retained
                assert {f"e-{i}" for i in range(6)} <= set(h.router.retained)
                assert {f"h-{i}" for i in range(6)} <= set(e.router.retained)
                assert e.backplane.link.held >= 1
                for t in (seen_h.task, seen_e.task):
                    t.cancel()

        run(scenario(), timeout=OUTAGE + 3 * RESYNC + 30)
