"""Mux round trip: what TsWriter writes, our demuxer and PyAV (FFmpeg's own demuxer) read back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from kestrel.fmv.ingest import read_frames, scan_klv
from kestrel.fmv.mux import TsWriter
from kestrel.fmv.ts import TsDemuxer
from kestrel.klv import decode, st0601


def _packet(i: int) -> bytes:
    return st0601.encode({13: 38.0 + i * 1e-4, 14: -77.0, 15: 1500.0 + i, 5: float(i)},
                         timestamp_us=1_700_000_000_000_000 + i * 40_000)


def test_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "rt.ts"
    n = 25
    with TsWriter(out, 160, 96, fps=25) as w:
        for i in range(n):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, : 6 * i + 6] = (0, 0, 255)  # a red bar growing with the frame index
            w.write(img, _packet(i) if i % 5 != 3 else None)  # some frames without KLV
    frames = list(read_frames(out))
    assert len(frames) == n
    for f in frames:
        assert f.pts == pytest.approx(f.index / 25)
        red = f.image[48, :, 2] > 128
        assert abs(int(red.sum()) - (6 * f.index + 6)) <= 2  # the right picture on the right frame
        if f.index % 5 == 3:
            assert f.klv == []
            assert f.metadata is not None and f.metadata.sensor_alt == pytest.approx(1500 + f.index - 1, abs=0.5)
        else:
            assert len(f.klv) == 1 and f.klv[0].checksum_ok is True
            assert f.klv[0].pts == pytest.approx(f.pts)
            assert f.klv[0].raw == _packet(f.index)
            assert f.metadata is not None and f.metadata.sensor_lat == pytest.approx(38.0 + f.index * 1e-4, abs=1e-6)

    # our TS parser: async KLV, stream type 0x06 with the KLVA registration descriptor
    demux = TsDemuxer()
    demux.feed(out.read_bytes())
    demux.close()
    kinds = {(s.stream_type, s.kind, s.sync) for s in demux.streams.values()}
    assert kinds == {(0x1B, "video", False), (0x06, "klv", False)}
    scan = scan_klv(out)
    assert len(scan.packets) == 20 and scan.video_pes == n

    # FFmpeg's demuxer (ffprobe-equivalent): an H.264 stream and a KLV data stream with PTS
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.width == 160
        data = c.streams.data
        assert len(data) == 1 and data[0].name == "klv"
        pkts = [p for p in c.demux(data[0]) if p.size]
        assert len(pkts) == 20 and all(p.pts is not None for p in pkts)
        assert [d for p in pkts for d in decode(bytes(p))][0].tags[13] == pytest.approx(38.0, abs=1e-6)


def test_writer_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TsWriter(tmp_path / "odd.ts", 161, 96)
    with TsWriter(tmp_path / "ok.ts", 64, 64) as w, pytest.raises(ValueError):
        w.write(np.zeros((32, 32, 3), np.uint8))


def test_synchronous_carriage_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "sync.ts"
    with TsWriter(out, 160, 96, fps=25, sync=True) as w:
        for i in range(12):
            w.write(np.full((96, 160, 3), 10 * i, np.uint8), _packet(i))
    demux = TsDemuxer()
    demux.feed(out.read_bytes())
    demux.close()
    klv = [s for s in demux.streams.values() if s.kind == "klv"]
    assert len(klv) == 1 and klv[0].stream_type == 0x15 and klv[0].sync and demux.stats.crc_errors == 0
    frames = list(read_frames(out))
    assert len(frames) == 12
    for f in frames:
        assert len(f.klv) == 1 and f.klv[0].raw == _packet(f.index) and f.klv[0].pts == pytest.approx(f.pts)
    # FFmpeg's own demuxer recognises the AU cells: it strips the 5-byte header, keeps the PTS
    with av.open(str(out)) as c:
        pkts = [p for p in c.demux(c.streams.data[0]) if p.size]
        assert [bytes(p) for p in pkts] == [_packet(i) for i in range(12)]
        assert [p.pts for p in pkts] == [i * 3600 for i in range(12)]


@pytest.mark.parametrize("sync", [False, True])
def test_timed_klv_lands_on_its_frame_with_b_frames(tmp_path: Path, sync: bool) -> None:
    """With B-frames, decode order != presentation order: timed KLV must follow the PTS."""
    out = tmp_path / "bf.ts"
    with TsWriter(out, 160, 96, fps=25, bframes=2, sync=sync) as w:
        for i in range(30):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, : 5 * i + 5] = 255
            w.write(img, _packet(i))
    demux = TsDemuxer()
    ev = demux.feed(out.read_bytes()) + demux.close()
    vpts = [e.pts for e in ev if e.__class__.__name__ == "VideoStart"]
    assert vpts != sorted(vpts)  # really reordered on the wire
    frames = list(read_frames(out))
    assert len(frames) == 30
    for f in frames:
        assert abs(int((f.image[48, :, 0] > 128).sum()) - (5 * f.index + 5)) <= 2
        assert [p.raw for p in f.klv] == [_packet(f.index)]
