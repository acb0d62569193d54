"""`kestrel ped run --restream udp://… --marti http://…`: the source video goes out again bit for
bit (so its KLV is intact), paced by its PCR, and the feed appears in the server's video list."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import av
import pytest

from kestrel.cli import main as kestrel_main
from kestrel.ped.restream import PCR_HZ, Pacer, Restream, RestreamError
from tests.marti_support import arequest, marti_running
from tests.ports import free_port
from tests.test_server_support import run

CLIP = Path(__file__).parent / "data" / "fmv" / "h264_klv.ts"  # KWIVER's sample: H.264 + ST 0601 KLV


class Receiver(threading.Thread):
    """A UDP receiver on loopback that collects `want` bytes (or gives up after `timeout`)."""

    def __init__(self, want: int, timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout)
        self.port = self.sock.getsockname()[1]
        self.want, self.data, self.sizes = want, bytearray(), []

    def run(self) -> None:
        try:
            while len(self.data) < self.want:
                d = self.sock.recv(65536)
                self.sizes.append(len(d))
                self.data += d
        except OSError:
            pass
        finally:
            self.sock.close()


def test_restream_is_bit_exact_and_the_feed_is_listed(tmp_path: Path) -> None:
    src = CLIP.read_bytes()
    rx = Receiver(len(src))
    rx.start()
    out_url = f"udp://127.0.0.1:{rx.port}"

    async def scenario() -> None:
        async with marti_running(tmp_path / "srv") as r:
            rc = await asyncio.to_thread(kestrel_main, [
                "ped", "run", str(CLIP), "--out", str(tmp_path / "run"), "--restream", out_url,
                "--marti", f"http://127.0.0.1:{r.http}", "--callsign", "UAV-7"])
            assert rc == 0
            feeds = ET.fromstring((await arequest(r.http, "GET", "/Marti/vcm")).body).findall("feed")
            assert [(f.findtext("alias"), f.findtext("protocol"), f.findtext("port")) for f in feeds] == \
                [("UAV-7", "udp", str(rx.port))]
            v = json.loads((await arequest(r.http, "GET", "/Marti/api/video")).body)
            assert v["videoConnections"][0]["feeds"][0]["url"] == out_url

    run(scenario(), timeout=120)
    rx.join(30)
    assert bytes(rx.data) == src  # every PID, KLV included, bit for bit
    assert all(s == 7 * 188 for s in rx.sizes[:-1])  # 7 TS packets per datagram, as STANAG 4609 streams
    (tmp_path / "got.ts").write_bytes(rx.data)
    with av.open(str(tmp_path / "got.ts")) as c:  # FFmpeg sees the video and the KLV data stream
        assert [s.type for s in c.streams] == ["video", "data"]


def test_pacer_follows_pcr_and_reanchors_on_jumps() -> None:
    t = [100.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(round(d, 6))
        t[0] += d

    p = Pacer(clock=lambda: t[0], sleep=sleep)
    p.wait(0)  # anchor
    p.wait(int(0.5 * PCR_HZ))  # half a second of stream later: wait half a second
    t[0] += 0.2  # processing took time: less to wait
    p.wait(int(1.0 * PCR_HZ))
    p.wait(int(100 * PCR_HZ))  # a jump: re-anchor, no long sleep
    p.wait(10)  # a wrap / discontinuity backwards: re-anchor
    assert slept == [0.5, 0.3]


def test_bad_restream_urls_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for url in ("tcp://127.0.0.1:5000", "udp://127.0.0.1", "srt://127.0.0.1:9000"):
        with pytest.raises(RestreamError):
            Restream(url, paced=False)
        assert kestrel_main(["ped", "run", str(CLIP), "--out", str(tmp_path / "x"), "--restream", url]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("kestrel: error: --restream") and url in err[-1]
    assert not (tmp_path / "x").exists()


def test_unreachable_marti_is_a_warning_not_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = free_port()  # a port nobody listens on
    rx = Receiver(len(CLIP.read_bytes()))
    rx.start()
    rc = kestrel_main(["ped", "run", str(CLIP), "--out", str(tmp_path / "run"), "--restream",
                       f"udp://127.0.0.1:{rx.port}", "--marti", f"http://127.0.0.1:{dead}"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "kestrel: warning: --marti: could not register the video feed" in err
    rx.join(30)
    assert bytes(rx.data) == CLIP.read_bytes()  # PED and the restream went on
