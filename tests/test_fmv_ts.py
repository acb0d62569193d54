"""Sans-I/O TS demuxer: chunking, synchronous AU cells, damage accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.fmv.psi import crc32_mpeg
from kestrel.fmv.ts import DataUnit, TsDemuxer, VideoStart, split_au_cells


def run(data: bytes, chunk: int) -> tuple[TsDemuxer, list]:
    d = TsDemuxer()
    events = []
    for i in range(0, len(data), chunk):
        events += d.feed(data[i : i + chunk])
    return d, events + d.close()


@pytest.mark.parametrize("chunk", [1, 187, 1000, 1 << 20])
def test_chunking_does_not_matter(ref_data: Path, chunk: int) -> None:
    data = (ref_data / "fmv" / "h265_tricky_klv.ts").read_bytes()
    if chunk == 1:
        data = data[: 188 * 120]  # byte-at-a-time on a prefix keeps the test fast
    ref_d, ref = run(data, 1 << 20)
    d, ev = run(data, chunk)
    assert [(type(e).__name__, e.pid, e.pts, getattr(e, "at", None), getattr(e, "payload", b"")) for e in ev] == [
        (type(e).__name__, e.pid, e.pts, getattr(e, "at", None), getattr(e, "payload", b"")) for e in ref]
    assert d.stats == ref_d.stats


def test_tricky_streams_and_carriage(ref_data: Path) -> None:
    d, ev = run((ref_data / "fmv" / "h265_tricky_klv.ts").read_bytes(), 4096)
    kinds = {pid: (s.stream_type, s.kind, s.sync) for pid, s in d.streams.items()}
    assert kinds == {256: (0x24, "video", False), 257: (0x15, "klv", True), 258: (0x06, "klv", False),
                     259: (0x06, "klv", False)}
    units = [e for e in ev if isinstance(e, DataUnit)]
    sync = [u for u in units if u.pid == 257]
    assert len(sync) == 30 and all(u.pts is not None and u.payload[:4] == b"\x06\x0e\x2b\x34" for u in sync)
    assert len(sync[0].payload) == 2422  # the 5-byte AU cell header is gone
    untimed = [u for u in units if u.pid == 258]
    assert len(untimed) == 60 and all(u.pts is None and u.at is not None for u in untimed)
    video = [e.pts for e in ev if isinstance(e, VideoStart)]
    assert {u.at for u in untimed} <= set(video)  # untimed KLV takes a video PES time


def test_au_cells() -> None:
    klv1, klv2 = b"\x06\x0e\x2b\x34" + b"a" * 20, b"\x06\x0e\x2b\x34" + b"b" * 5
    cells = bytes([1, 0, 0xDF]) + len(klv1).to_bytes(2, "big") + klv1 + bytes([1, 1, 0xDF, 0, len(klv2)]) + klv2
    assert split_au_cells(cells) == [klv1, klv2]
    assert split_au_cells(klv1) == [klv1]  # bare KLV in a 0x15 stream is taken as is
    assert split_au_cells(bytes([1, 0, 0xDF, 0, 99]) + klv2) == [klv2]  # overlong cell: keep the rest


def test_damage_is_counted_not_raised(ref_data: Path) -> None:
    data = bytearray((ref_data / "fmv" / "h264_klv.ts").read_bytes())
    data[188 * 50 + 3] ^= 0x0F  # continuity counter of one packet
    data[188 * 100 + 1] |= 0x80  # transport error indicator
    data[188 * 200 : 188 * 200 + 50] = b"\x00" * 50  # sync lost
    d, ev = run(bytes(data) + b"\x47\x01", 5000)
    assert d.stats.bytes_skipped > 0 and d.stats.transport_errors >= 1
    assert d.stats.partial_tail == 2
    assert 20 < sum(isinstance(e, DataUnit) for e in ev) < 30


def test_garbage_only() -> None:
    d, ev = run(bytes(range(256)) * 100, 777)
    assert ev == [] and d.streams == {} and d.stats.bytes_skipped > 0


def test_crc() -> None:
    pat = bytes.fromhex("00b00d0001c100000001f0002ab104b2")
    assert crc32_mpeg(pat) == 0
    assert crc32_mpeg(pat[:-1] + b"\x00") != 0


def test_untimed_pes_without_length_keeps_alignment(ref_data: Path) -> None:
    """PES_packet_length 0 (allowed): a unit completes only at the PID's next start, yet it must
    still take effect at the first video PES after its own bytes, as with a declared length."""
    data = bytearray((ref_data / "fmv" / "h264_klv.ts").read_bytes())
    patched = 0
    for off in range(0, len(data), 188):
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        if pid == 257 and data[off + 1] & 0x40:
            start = off + (5 + data[off + 4] if data[off + 3] & 0x20 else 4)
            assert data[start : start + 3] == b"\x00\x00\x01"
            data[start + 4 : start + 6] = b"\x00\x00"
            patched += 1
    assert patched == 30

    def stamps(buf: bytes) -> list[int | None]:
        _d, ev = run(buf, 4096)
        return [e.at for e in ev if isinstance(e, DataUnit)]

    original = stamps((ref_data / "fmv" / "h264_klv.ts").read_bytes())
    assert stamps(bytes(data)) == original and len(set(original)) == 30
