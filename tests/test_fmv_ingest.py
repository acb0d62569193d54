"""Frame iterator on the shared STANAG 4609 samples (KWIVER's files, not ours)."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kestrel.fmv.frame import FmvInputError
from kestrel.fmv.ingest import VideoReader, read_frames, scan_klv

# name -> (frames, KLV packets, sets)
EXPECTED = {
    "h264_klv.ts": (30, 30, {"ST0601": 30}),
    "mpeg2_klv.ts": (30, 30, {"ST0601": 30}),
    "h265_tricky_klv.ts": (30, 90, {"ST0601": 90}),
    "aphill_klv_10s.ts": (10, 300, {"EG0104": 300}),
    "h264_no_klv.ts": (30, 0, {}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_counts(ref_data: Path, name: str) -> None:
    frames_n, klv_n, sets = EXPECTED[name]
    reader = VideoReader(ref_data / "fmv" / name)
    frames = list(reader)
    assert len(frames) == frames_n
    assert [f.index for f in frames] == list(range(frames_n))
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames)
    pts = [f.pts for f in frames]
    assert pts[0] == pytest.approx(0.0) and pts == sorted(pts)
    # every packet lands on a frame, or after the last one (aphill's KLV runs 1 s past its last frame)
    assert sum(len(f.klv) for f in frames) + len(reader.trailing) == klv_n
    assert all(p.pts is None or p.pts > frames[-1].pts for p in reader.trailing)
    assert dict(reader.stats.klv.by_set) == sets
    assert reader.stats.klv.checksum_failures == 0
    scan = scan_klv(ref_data / "fmv" / name)
    assert len(scan.packets) == klv_n and dict(scan.stats.by_set) == sets
    assert scan.video_pes == frames_n


def test_no_klv_sample_has_no_metadata(ref_data: Path) -> None:
    frames = list(read_frames(ref_data / "fmv" / "h264_no_klv.ts"))
    assert frames and all(f.metadata is None and f.klv == [] for f in frames)


def test_tricky_alignment_matches_kwiver_gold(ref_data: Path) -> None:
    """Per frame: the same packets (by stream and precision timestamp) as KWIVER's decode."""
    gold = json.loads(zlib.decompress((ref_data / "fmv" / "video_stream_tricky_klv.json.zz").read_bytes()))
    want: dict[int, Counter[tuple[int, int]]] = {}
    micros: dict[int, int] = {}
    for entry in gold:
        ts = next(v["value"] for v in entry["value"] if v["key"]["integer"] == 2)
        # KWIVER's stream index counts FFmpeg streams: 0 video (PID 256), 1.. data PIDs 257..
        want.setdefault(entry["frame"] - 1, Counter())[(256 + entry["stream-index"], ts)] += 1
        micros[entry["frame"] - 1] = entry["microseconds"]
    frames = list(read_frames(ref_data / "fmv" / "h265_tricky_klv.ts"))
    assert len(frames) == len(want)
    for f in frames:
        got = Counter((p.stream, p.tags[2]) for p in f.klv)
        assert got == want[f.index], f"frame {f.index}"
        assert round(f.pts * 1e6) == pytest.approx(micros[f.index], abs=1)
        # equal effective times merge in arrival order: the last packet's timestamp wins
        assert f.metadata is not None and f.metadata.time_us == f.klv[-1].tags[2]
    sync = [p for f in frames for p in f.klv if p.stream == 257]
    assert all(p.pts is not None for p in sync)  # synchronous carriage keeps its PTS
    assert all(p.pts is None for f in frames for p in f.klv if p.stream == 258)  # untimed


def test_aphill_metadata_is_latest_at_or_before_frame(ref_data: Path) -> None:
    frames = list(read_frames(ref_data / "fmv" / "aphill_klv_10s.ts"))
    for f in frames:
        assert f.metadata is not None and f.metadata.sensor_lat == pytest.approx(38.16, abs=0.05)
        if f.index > 0:  # frames are 1 s apart, KLV 30 Hz: the last packet is <= the frame time
            assert f.klv and max(p.pts for p in f.klv) <= f.pts + 1e-9
            assert f.metadata.time_us == f.klv[-1].tags["User Defined Timestamp"]


def test_corrupted_stream_keeps_going(ref_data: Path, tmp_path: Path) -> None:
    data = bytearray((ref_data / "fmv" / "h264_klv.ts").read_bytes())
    rng = np.random.default_rng(7)
    mid = len(data) // 2
    data[mid : mid + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()  # garbage, sync lost
    del data[mid + 5000 : mid + 5100]  # and a hole that breaks packet alignment
    bad = tmp_path / "corrupt.ts"
    bad.write_bytes(bytes(data))
    reader = VideoReader(bad)
    frames = list(reader)
    assert 20 <= len(frames) <= 30
    assert reader.stats.ts.bytes_skipped > 0
    assert reader.stats.klv.packets >= 20  # KLV before and after the damage still decoded
    assert frames[-1].metadata is not None


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty input"),
        (b"hello, this is not video\n" * 400, "not an MPEG transport stream"),
        (bytes([0x89]) + b"PNG\r\n\x1a\n" + bytes(5000), "not an MPEG transport stream"),
    ],
)
def test_not_video_raises_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.ts"
    path.write_bytes(content)
    with pytest.raises(FmvInputError, match=reason) as exc:
        list(read_frames(path))
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    with pytest.raises(FmvInputError, match=reason):
        scan_klv(path)


def test_severely_truncated_raises(ref_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.ts"
    path.write_bytes((ref_data / "fmv" / "h264_klv.ts").read_bytes()[:700])
    with pytest.raises(FmvInputError):
        list(read_frames(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FmvInputError, match="No such file"):
        list(read_frames(tmp_path / "nope.ts"))


def test_same_klv_per_frame_in_h264_and_mpeg2_samples(ref_data: Path) -> None:
    """KWIVER muxed the same KLV into its H.264 and MPEG-2 (DTS != PTS) samples: the untimed
    rule must put the same packet on the same frame in both."""
    a = [[p.raw for p in f.klv] for f in read_frames(ref_data / "fmv" / "h264_klv.ts")]
    b = [[p.raw for p in f.klv] for f in read_frames(ref_data / "fmv" / "mpeg2_klv.ts")]
    assert a == b and all(len(x) == 1 for x in a) and len({x[0] for x in a}) == 30


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_never_escapes(ref_data: Path, tmp_path: Path, seed: int) -> None:
    """Flipped bytes anywhere (headers, PSI, PES, KLV, video): frames or FmvInputError, nothing else."""
    name = ["h265_tricky_klv.ts", "h264_klv.ts", "aphill_klv_10s.ts"][seed % 3]
    data = bytearray((ref_data / "fmv" / name).read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(0, len(data), len(data) // 500):
        data[pos] = int(rng.integers(0, 256))
    path = tmp_path / "flipped.ts"
    path.write_bytes(bytes(data))
    try:
        reader = VideoReader(path)
        frames = list(reader)
        assert frames and reader.stats.frames == len(frames)
    except FmvInputError:
        pass
    try:
        scan = scan_klv(path)
        assert scan.stats.packets == len(scan.packets)
    except FmvInputError:
        pass
