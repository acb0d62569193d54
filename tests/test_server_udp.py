"""UDP datagrams in (CoT XML, and TAK mesh protobuf made by takproto) reach streaming clients of the
UDP listener's groups; a garbage datagram is counted, logged and skipped."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import takproto
from takproto.constants import TAKProtoVer

from kestrel.server.config import ListenerConfig
from tests.test_server_support import Client, make_config, run, sa, server_running, uid_of


def test_udp_xml_and_mesh_protobuf_reach_tcp_clients(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(
        tmp_path,
        ListenerConfig("tcp", "tcp", "127.0.0.1", 0),
        ListenerConfig("red", "tcp", "127.0.0.1", 0, ("Red",)),
        ListenerConfig("udp", "udp", "127.0.0.1", 0),
    )

    async def scenario() -> None:
        async with server_running(cfg) as server:
            c = await Client.connect(f"tcp://127.0.0.1:{server.ports['tcp']}")
            red = await Client.connect(f"tcp://127.0.0.1:{server.ports['red']}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                dest = ("127.0.0.1", server.ports["udp"])
                s.sendto(b"\x00\x01garbage", dest)
                s.sendto(b"\xbf\x01\xbf\xff\xff", dest)
                s.sendto(sa("U-xml", "UDPXML"), dest)
                mesh = bytes(takproto.xml2proto(sa("U-mesh", "UDPMESH").split(b"?>", 1)[1].strip(), TAKProtoVer.MESH))
                assert mesh[:3] == b"\xbf\x01\xbf"
                s.sendto(mesh, dest)
                got = await c.recv_until(lambda e: uid_of(e) == "U-mesh")
            live = [e for e in got if not e.get("type", "").startswith("t-x-takp")]
            assert [uid_of(e) for e in live] == ["U-xml", "U-mesh"]
            assert live[1].find("detail/contact").get("callsign") == "UDPMESH"  # type: ignore[union-attr]
            assert [e.get("type") for e in await red.drain(0.3)] == ["t-x-takp-v"]  # other group: nothing
            await asyncio.sleep(0)

    run(scenario())
    bad = [r.getMessage() for r in caplog.records if "event=udp.bad_input" in r.getMessage()]
    assert len(bad) == 2 and "errors=2" in bad[1]
