"""Per-address penalty after an oversize close (issue 12): a huge-event sender that reconnects in a
loop is refused at accept for `oversize_penalty_s`; other addresses and the address's existing
connections are untouched, and the penalty ends (bounded, never extended by a refusal). The
server's clock is the test's (no waiting on time)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kestrel.server.config import ConfigError, Limits, load
from tests.test_server_abuse import _until_closed, marker
from tests.test_server_support import Client, eventually, make_config, run, server_running, uid_of

HUGE = b'<event version="2.0" uid="HUGE" type="b-m-p-s-m"><point lat="0" lon="0"/><detail>' + b"x" * 16_384


async def _offer(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect from `source` and read until the protobuf offer (after the retained picture): admitted."""
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    while b"t-x-takp-v" not in await asyncio.wait_for(r.readuntil(b"</event>"), 10):
        pass
    return r, w


def test_an_oversize_close_refuses_that_address_for_a_short_while(tmp_path: Path) -> None:
    limits = Limits(max_event_bytes=4096, oversize_penalty_s=30.0)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=limits)) as server:
            now = [1000.0]
            server.clock = lambda: now[0]
            port = server.ports["tcp"]
            b = await Client.connect(f"tcp://127.0.0.1:{port}")  # connected before: keeps working
            r, w = await _offer(port, "127.0.0.1")
            w.write(HUGE)
            await _until_closed(r)
            w.close()
            await eventually(lambda: server.metrics.get("closed_oversize") == 1 and len(server.sessions) == 1)
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            await _until_closed(r2)  # same address, within the penalty: refused at accept
            w2.close()
            assert server.metrics.get("refused_penalty") == 1
            other_r, other_w = await _offer(port, "127.0.0.2")  # another address: admitted
            other_w.write(marker("OTHER", "from another address"))
            await b.recv_until(lambda e: uid_of(e) == "OTHER")  # the penalized address's old client too
            now[0] += 29.0
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            await _until_closed(r3)
            w3.close()  # a refusal does not extend the penalty: it ends 30 s after the close
            now[0] += 1.0
            _, w4 = await _offer(port, "127.0.0.1")
            assert server.metrics.get("refused_penalty") == 2
            for wr in (other_w, w4):
                wr.close()

    run(scenario())


def test_penalty_is_configurable_and_zero_turns_it_off(tmp_path: Path) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text("[limits]\noversize_penalty_s = 0\n")
    assert load(cfg).limits.oversize_penalty_s == 0
    cfg.write_text("[limits]\nidle_timeout_s = 0\n")  # 0 stays refused for every other limit
    with pytest.raises(ConfigError, match="idle_timeout_s"):
        load(cfg)
    assert Limits().oversize_penalty_s == 1.0  # default: short (NAT'd units share an address)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path, limits=Limits(max_event_bytes=4096, oversize_penalty_s=0)))\
                as server:
            r, w = await _offer(server.ports["tcp"], "127.0.0.1")
            w.write(HUGE)
            await _until_closed(r)
            w.close()
            await eventually(lambda: server.metrics.get("closed_oversize") == 1 and not server.sessions)
            _, w2 = await _offer(server.ports["tcp"], "127.0.0.1")
            w2.close()
            assert server.metrics.get("refused_penalty") == 0

    run(scenario())
