"""Live input: a TS sent over loopback UDP (7 x 188-byte datagrams, like real encoders)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from kestrel.fmv.ingest import VideoReader
from kestrel.fmv.live import UdpSource


def test_udp_live_smoke(shared_data: Path) -> None:
    data = (shared_data / "fmv" / "h264_klv.ts").read_bytes()
    src = UdpSource("127.0.0.1", 0, idle_timeout=1.0)  # OS-chosen port
    port = src.address[1]

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(0, len(data), 188 * 7):
                s.sendto(data[i : i + 188 * 7], ("127.0.0.1", port))
                time.sleep(0.0005)

    sender = threading.Thread(target=send)
    sender.start()
    reader = VideoReader(src, idle_timeout=1.0)
    frames = list(reader)
    sender.join()
    src.close()
    assert len(frames) == 30 and reader.stats.klv.packets == 30
    assert sum(len(f.klv) for f in frames) == 30 and frames[-1].metadata is not None


def test_udp_url_parsing() -> None:
    src = UdpSource.from_url("udp://127.0.0.1:0", idle_timeout=0.2)
    try:
        assert src.address[0] == "127.0.0.1" and src.read(100) == b""  # idle -> end of stream
    finally:
        src.close()
