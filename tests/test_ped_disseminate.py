"""Dissemination to a TEN server (ours, in-process) seen through pytak clients over TCP and TLS:
the platform, its footprint and confirmed tracks arrive; pending ones only with --release auto;
rejected ones never. Review changes change what is sent. Also the push client's failure path."""

from __future__ import annotations

import asyncio
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kestrel import pki as certs
from kestrel.cli import main as kestrel_main
from kestrel.ped.review import PlatformState, ReviewStore, StoredPoint, StoredTrack
from kestrel.server.config import ListenerConfig
from tests.ports import free_port
from tests.test_server_support import Client, make_config, run, server_running, uid_of

FOOT = [(38.84, -77.07), (38.84, -77.06), (38.83, -77.06), (38.83, -77.07)]


def make_run(run_dir: Path) -> dict[str, str]:
    """A finished run as the pipeline leaves it: three pending tracks, a platform path."""
    with ReviewStore(run_dir) as st:
        st.set_meta(run_id="t1", source="clip.ts", video_url="file:///data/clip.ts")
        tracks = []
        for tid in (1, 2, 3):
            pts = [StoredPoint(f, f / 30, 50.0 + f, 60.0, 8, 8, 38.835 + tid * 1e-3, -77.065 + f * 1e-5)
                   for f in range(6)]
            tracks.append(StoredTrack(id=tid, points=pts, frames=6, first_seen=0.0, last_seen=pts[-1].t, speed=5.0,
                                      heading=90.0, lat=pts[-1].lat, lon=pts[-1].lon))
        st.upsert_tracks(tracks)
        st.add_platform([PlatformState(5, 0.16, lat=38.80, lon=-77.065, alt=1200.0, heading=0.0, sensor_az=0.0,
                                       sensor_el=-35.0, hfov=15.0, vfov=10.0, footprint=FOOT)])
    base = "kestrel-ped-t1"
    # one UAV per platform (issue 9): no KLV designation stored, so the platform is its source
    return {"platform": "kestrel-uav-clip.ts", "footprint": f"{base}-footprint",
            **{f"t{i}": f"{base}-track-{i}" for i in (1, 2, 3)}}


def cli(*args: str) -> int:
    return kestrel_main(["ped", *args])


async def _cli(*args: str) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: cli(*args))


async def _received(client: Client, quiet: float = 0.6) -> dict[str, ET.Element]:
    evs = await client.drain(quiet)
    return {uid_of(e): e for e in evs if not e.get("type", "").startswith("t-x-takp")}


def _review(run_dir: Path, *args: str) -> None:
    assert cli("review", str(run_dir), *args) == 0


def test_tcp_push_confirmed_only_then_release_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    uid = make_run(run_dir)
    _review(run_dir, "--confirm", "1", "--label", "vehicle", "--affiliation", "hostile", "--analyst", "ana")
    _review(run_dir, "--reject", "3", "--analyst", "ana")

    async def scenario() -> None:
        async with server_running(make_config(tmp_path / "ten")) as server:
            url = f"tcp://127.0.0.1:{server.ports['tcp']}"
            watcher = await Client.connect(url)
            await watcher.drain(0.2)  # the server's protocol offer
            assert await _cli("disseminate", str(run_dir), "--push", url) == 0
            got = await _received(watcher)
            assert set(got) == {uid["platform"], uid["footprint"], uid["t1"]}
            assert got[uid["platform"]].get("type") == "a-f-A-M-F-Q"
            assert got[uid["platform"]].find("detail/sensor") is not None
            assert got[uid["footprint"]].get("type") == "u-d-f"
            assert len(got[uid["footprint"]].findall("detail/link")) == 5
            t1 = got[uid["t1"]]
            assert t1.get("type") == "a-h-G-E-V"
            assert t1.find("detail/contact").get("callsign") == "T1 vehicle"  # type: ignore[union-attr]
            assert t1.find("detail/track").get("speed") == "5.0"  # type: ignore[union-attr]

            # --release auto: the pending track too, marked unvalidated; the rejected one never.
            assert await _cli("disseminate", str(run_dir), "--push", url, "--release", "auto") == 0
            got = await _received(watcher)
            assert set(got) == {uid["platform"], uid["footprint"], uid["t1"], uid["t2"]}
            t2 = got[uid["t2"]]
            assert t2.get("type") == "a-u-G" and t2.get("how") == "m-a"
            assert t2.find("detail/contact").get("callsign").startswith("UNVALIDATED")  # type: ignore[union-attr]
            assert "UNVALIDATED" in (t2.find("detail/remarks").text or "")  # type: ignore[union-attr]

            # The analyst changes their mind: 1 rejected, 2 confirmed as a friendly person.
            await _cli("review", str(run_dir), "--reject", "1")
            await _cli("review", str(run_dir), "--confirm", "2", "--label", "person", "--affiliation", "friend")
            assert await _cli("disseminate", str(run_dir), "--push", url) == 0
            got = await _received(watcher)
            # Track 1 was on the map: it is retracted with ATAK's delete (t-x-d-d + __forcedelete).
            assert set(got) == {uid["platform"], uid["footprint"], uid["t2"], uid["t1"] + "-delete"}
            assert got[uid["t2"]].get("type") == "a-f-G"
            dele = got[uid["t1"] + "-delete"]
            assert dele.get("type") == "t-x-d-d" and dele.find("detail/__forcedelete") is not None
            assert dele.find("detail/link").get("uid") == uid["t1"]  # type: ignore[union-attr]

            # A client joining later still gets the platform and the track from the server's store.
            late = await Client.connect(url)
            late_got = await _received(late)
            assert uid["platform"] in late_got and uid["t2"] in late_got and uid["t1"] not in late_got
            await watcher.close()
            await late.close()

    run(scenario())
    out = capsys.readouterr().out
    assert "pushed to tcp://127.0.0.1:" in out and "3 events" in out and "1 t-x-d-d" in out


def test_tls_push_with_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    certs.init(pki)
    for name in ("ped", "watcher"):
        certs.issue_client(pki, name)
    p = certs.paths(pki)
    run_dir = tmp_path / "run"
    uid = make_run(run_dir)
    _review(run_dir, "--confirm", "3", "--label", "vessel")

    async def scenario() -> None:
        cfg = make_config(tmp_path / "ten", ListenerConfig("tls", "tls", "127.0.0.1", 0),
                          tls_ca=p.ca_cert, tls_cert=p.server_cert, tls_key=p.server_key)
        async with server_running(cfg) as server:
            url = f"tls://127.0.0.1:{server.ports['tls']}"
            w = p.client("watcher")
            watcher = await Client.connect(url, PYTAK_TLS_CLIENT_CERT=str(w.cert), PYTAK_TLS_CLIENT_KEY=str(w.key),
                                           PYTAK_TLS_CLIENT_CAFILE=str(p.ca_cert))
            await watcher.drain(0.2)
            c = p.client("ped")
            assert await _cli("disseminate", str(run_dir), "--push", url, "--cert", str(c.cert), "--key",
                              str(c.key), "--ca", str(p.ca_cert)) == 0
            got = await _received(watcher)
            assert set(got) == {uid["platform"], uid["footprint"], uid["t3"]}
            assert got[uid["t3"]].get("type") == "a-u-S"
            # The same through a `kestrel certs` data dir.
            assert await _cli("disseminate", str(run_dir), "--push", url, "--certs", str(pki),
                              "--client", "ped") == 0
            assert set(await _received(watcher)) == {uid["platform"], uid["footprint"], uid["t3"]}
            await watcher.close()

    run(scenario())


def test_tls_without_certificates_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    assert cli("disseminate", str(tmp_path), "--push", "tls://127.0.0.1:1") == 2
    assert "--cert" in capsys.readouterr().err
    assert cli("disseminate", str(tmp_path), "--push", "http://x:1") == 2
    assert cli("disseminate", str(tmp_path / "nope"), "--push", "tcp://127.0.0.1:1") == 2


def test_unreachable_server_reports_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    _review(tmp_path, "--confirm", "1")
    port = free_port()  # a port nobody listens on
    assert cli("disseminate", str(tmp_path), "--push", f"tcp://127.0.0.1:{port}") == 1
    out = capsys.readouterr().out
    assert "0 events" in out and "3 NOT sent" in out and "ConnectionRefusedError" in out


def test_dry_run_prints_what_would_be_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uid = make_run(tmp_path)
    _review(tmp_path, "--confirm", "2")
    capsys.readouterr()
    assert cli("disseminate", str(tmp_path), "--push", "tcp://127.0.0.1:1", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("<event") == 3 and uid["t2"] in out and uid["t1"] not in out


def test_bounded_queue_drops_oldest_and_sink_gets_xml_stream(ref_data: Path) -> None:
    """Against a bare TCP sink: a burst larger than the queue keeps the newest events, the stream
    is plain CoT XML that MITRE's schema accepts, and close() ends the connection cleanly."""
    import threading

    from lxml import etree

    from kestrel.cot.event import Event
    from kestrel.ped.disseminate import Pusher, parse_target

    received = bytearray()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def sink() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(65536):  # returns b"" once the client closed cleanly
                received.extend(chunk)

    t = threading.Thread(target=sink)
    t.start()
    evs = [Event(uid=f"u{i}", type="a-u-G", time=1, start=1, stale=2, lat=1.0, lon=2.0) for i in range(10)]
    pusher = Pusher(parse_target(f"tcp://127.0.0.1:{srv.getsockname()[1]}"), queue_max=3)
    pusher.offer(evs)  # one call holds the queue lock: the worker cannot take any before the drops
    report = pusher.close()
    t.join(10)
    srv.close()
    assert not t.is_alive() and report.dropped == 7 and report.sent == 3 and report.uids == ["u7", "u8", "u9"]
    docs = [b"<?xml" + part for part in bytes(received).split(b"<?xml")[1:]]
    xsd = etree.XMLSchema(etree.parse(str(ref_data / "cot/schema/cot-base-event.xsd")))
    assert [etree.fromstring(d).get("uid") for d in docs] == ["u7", "u8", "u9"]
    assert all(xsd.validate(etree.fromstring(d)) for d in docs)


def test_reconnects_after_the_server_restarts() -> None:
    import threading

    from kestrel.cot.event import Event
    from kestrel.ped.disseminate import Pusher, parse_target

    def listener(port: int = 0) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return s

    def serve_one(srv: socket.socket, got: list[bytes]) -> None:
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while b"</event>" not in buf and (chunk := conn.recv(65536)):
                buf += chunk
            got.append(buf)
        srv.close()  # the "server" goes away after one event

    first = listener()
    port = first.getsockname()[1]
    got1: list[bytes] = []
    t1 = threading.Thread(target=serve_one, args=(first, got1))
    t1.start()
    pusher = Pusher(parse_target(f"tcp://127.0.0.1:{port}"))
    ev = [Event(uid=f"u{i}", type="a-u-G", time=1, start=1, stale=2) for i in range(2)]
    pusher.offer(ev[:1])
    t1.join(10)
    second = listener(port)  # the server is back on the same port
    got2: list[bytes] = []
    t2 = threading.Thread(target=serve_one, args=(second, got2))
    t2.start()
    assert pusher.peer_closed.wait(30)  # the client noticed the EOF of the first connection
    pusher.offer(ev[1:])
    report = pusher.close()
    t2.join(10)
    assert b'uid="u0"' in got1[0] and b'uid="u1"' in got2[0]
    assert report.sent == 2 and report.connects == 2 and report.dropped == 0


def test_track_video_link_never_a_local_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's source is a file (stored as file:// by older runs): confirmed tracks carry no
    video link; with --video-url they carry that URL (ATAK's LinkDetailHandler url + mime)."""
    uid = make_run(tmp_path)
    _review(tmp_path, "--confirm", "1")
    capsys.readouterr()
    assert cli("disseminate", str(tmp_path), "--push", "tcp://127.0.0.1:1", "--dry-run") == 0
    out = capsys.readouterr().out
    track = next(ET.fromstring(x) for x in out.splitlines() if uid["t1"] in x)
    assert "file:" not in out and "/data/clip.ts" not in out
    assert [lk.get("url") for lk in track.findall("detail/link") if lk.get("url")] == []
    feed = "rtsp://10.1.1.5:8554/uav1"
    assert cli("disseminate", str(tmp_path), "--push", "tcp://127.0.0.1:1", "--dry-run", "--video-url", feed) == 0
    track = next(ET.fromstring(x) for x in capsys.readouterr().out.splitlines() if uid["t1"] in x)
    urls = [lk for lk in track.findall("detail/link") if lk.get("url")]
    assert len(urls) == 1 and urls[0].get("url") == feed and urls[0].get("mime") == "video/mp2t"


@pytest.mark.parametrize(
    ("url", "shared"),
    [("udp://239.1.2.3:5000", True), ("rtsp://cam.example/feed", True), ("https://10.0.0.9/live.ts", True),
     ("srt://10.0.0.9:9000", True), ("file:///data/clip.ts", False), ("/data/clip.ts", False),
     ("udp://127.0.0.1:5000", False), ("udp://localhost:5000", False), ("udp://0.0.0.0:5000", False),
     ("udp://:5000", False), ("tcp://10.0.0.9:5000", False), (None, False)],
)
def test_shareable_video_url(url: str | None, shared: bool) -> None:
    from kestrel.ped.cot import shareable_video_url

    assert shareable_video_url(url) == (url if shared else None)
