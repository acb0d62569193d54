"""Live input: a TS sent over loopback UDP (7 x 188-byte datagrams, like real encoders)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from kestrel.fmv.frame import FmvInputError
from kestrel.fmv.ingest import VideoReader
from kestrel.fmv.live import DEFAULT_IDLE_TIMEOUT, UdpSource


def test_udp_live_smoke(ref_data: Path) -> None:
    data = (ref_data / "fmv" / "h264_klv.ts").read_bytes()
    src = UdpSource("127.0.0.1", 0, idle_timeout=120.0)  # OS-chosen port; the sender ends the stream
    port = src.address[1]
    lost: list[int] = []

    def send() -> None:  # each datagram once the previous one arrived: none lost on a loaded machine
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(0, len(data), 188 * 7):
                s.sendto(data[i : i + 188 * 7], ("127.0.0.1", port))
                if not src.wait_received(min(i + 188 * 7, len(data)), timeout=120.0):
                    lost.append(i)
                    break
        src.close()  # end of stream

    sender = threading.Thread(target=send)
    sender.start()
    reader = VideoReader(src)
    frames = list(reader)
    sender.join()
    assert lost == [] and src.received_bytes == len(data)
    assert len(frames) == 30 and reader.stats.klv.packets == 30
    assert sum(len(f.klv) for f in frames) == 30 and frames[-1].metadata is not None


def test_udp_url_parsing() -> None:
    src = UdpSource.from_url("udp://127.0.0.1:0", idle_timeout=0.2)
    try:
        assert src.address[0] == "127.0.0.1" and src.read(100) == b""  # idle -> end of stream
    finally:
        src.close()


def test_idle_timeout_names_the_url_and_the_wait() -> None:
    """No datagram at all: the reader ends with 'no data on URL for N s', not 'empty input'."""
    t0 = time.monotonic()
    with pytest.raises(FmvInputError, match=r"^no data on udp://127\.0\.0\.1:0 for 0\.4 s"):
        list(VideoReader("udp://127.0.0.1:0", idle_timeout=0.4))
    assert time.monotonic() - t0 >= 0.35


def test_idle_timeout_zero_waits_for_the_first_datagram() -> None:
    src = UdpSource("127.0.0.1", 0, idle_timeout=0)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(src.read(100)))
    reader.start()
    try:
        reader.join(0.6)
        assert reader.is_alive() and not got  # still waiting: 0 means no timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x47" * 10, src.address)
        reader.join(2.0)
        assert got == [b"\x47" * 10] and not src.timed_out
    finally:
        src.close()
        reader.join(2.0)


def test_default_idle_timeout_is_a_minute() -> None:
    assert DEFAULT_IDLE_TIMEOUT == 60.0
    assert VideoReader("udp://127.0.0.1:0").idle_timeout == 60.0


def test_host_names_resolve() -> None:
    src = UdpSource.from_url("udp://localhost:0", idle_timeout=0.1)
    try:
        assert src.address[0] == "127.0.0.1" and src.read(1) == b"" and src.timed_out
    finally:
        src.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("udp://192.0.2.1:5000", "cannot listen on 192.0.2.1:5000"),  # TEST-NET-1: not this machine
        ("udp://127.0.0.1:99999", "bad port"),
        ("udp://127.0.0.1:port", "bad port"),
        ("udp://127.0.0.1", "expected udp://HOST:PORT"),
    ],
)
def test_bad_udp_urls_are_one_line_input_errors(url: str, reason: str) -> None:
    with pytest.raises(FmvInputError) as err:
        UdpSource.from_url(url, idle_timeout=0.1)
    msg = str(err.value)
    assert msg.startswith(url + ":") and reason in msg and "\n" not in msg
    with pytest.raises(FmvInputError, match=reason):  # the same through the reader
        list(VideoReader(url, idle_timeout=0.1))
