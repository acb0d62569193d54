"""`kestrel fmv info|footprint|check` run in-process through kestrel.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kestrel.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_info_no_klv_reports_zero(ref_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["fmv", "info", str(ref_data / "fmv" / "h264_no_klv.ts")], capsys)
    assert rc == 0 and err == ""
    assert "klv packets: 0 in 0 units" in out and "checksum failures: 0" in out
    rc, out, _ = run(["fmv", "info", "--json", str(ref_data / "fmv" / "h264_no_klv.ts")], capsys)
    assert rc == 0 and out == ""


def test_info_tricky(ref_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["fmv", "info", str(ref_data / "fmv" / "h265_tricky_klv.ts")], capsys)
    assert rc == 0
    assert "hevc 160x120" in out and "synchronous (0x15, AU cells) units=30" in out
    assert "klv packets: 90 in 90 units (60 untimed)" in out and "ST0601: 90" in out


def test_info_json_one_object_per_packet(ref_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["fmv", "info", "--json", str(ref_data / "fmv" / "h264_klv.ts")], capsys)
    assert rc == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 30
    for o in objs:
        assert o["set"] == "ST0601" and o["checksum_ok"] is True and o["pts"] is None  # async, untimed
        assert isinstance(o["at"], float) and "13" in o["tags"] and "2" in o["tags"]
    assert objs[0]["tags"]["2"] == 1224807209913000  # precision time stamp, as KWIVER's gold has it


@pytest.mark.parametrize("cut", [50_000, 700])
def test_truncated_exit_2(ref_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: int) -> None:
    path = tmp_path / "cut.ts"
    path.write_bytes((ref_data / "fmv" / "h264_klv.ts").read_bytes()[:cut])
    rc, _out, err = run(["fmv", "info", str(path)], capsys)
    assert rc == 2 and err.count("\n") == 1 and str(path) in err and "truncated" in err


def test_non_video_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not a transport stream\n" * 100)
    for argv in (["fmv", "info", str(path)], ["fmv", "footprint", str(path), "--out", str(tmp_path / "f.json")]):
        rc, _out, err = run(argv, capsys)
        assert rc == 2 and err.count("\n") == 1 and "not an MPEG transport stream" in err


def test_audio_only_ts_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import av
    import numpy as np

    path = tmp_path / "audio.ts"
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("mp2", rate=48000)
        for i in range(20):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            fr.sample_rate, fr.pts = 48000, i * 1152
            for p in s.encode(fr):
                c.mux(p)
    rc, _out, err = run(["fmv", "info", str(path)], capsys)
    assert rc == 2 and "no video stream" in err and err.count("\n") == 1


def test_footprint_geojson(ref_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fp.geojson"
    rc, text, _ = run(["fmv", "footprint", str(ref_data / "fmv" / "aphill_klv_10s.ts"), "--out", str(out)], capsys)
    assert rc == 0 and "300 footprints" in text
    fc = json.loads(out.read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 300
    f0 = fc["features"][0]
    ring = f0["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    lon, lat = ring[0]
    assert 38.1 < lat < 38.3 and -77.5 < lon < -77.2  # near the frame centre the KLV itself gives
    assert f0["properties"]["time"].startswith("2008-") and f0["properties"]["pts"] == 0.0
    rc, text, _ = run(["fmv", "footprint", str(ref_data / "fmv" / "aphill_klv_10s.ts"), "--out", str(out),
                       "--per-frame"], capsys)
    assert rc == 0 and len(json.loads(out.read_text())["features"]) == 10


def test_check_reports_median_and_p90(ref_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["fmv", "check", str(ref_data / "fmv" / "aphill_klv_10s.ts"),
                      str(ref_data / "fmv" / "h264_no_klv.ts")], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert "median_m" in lines[0] and "p90_m" in lines[0]
    cols = lines[1].split()
    assert cols[1] == "300" and cols[2] == "300" and float(cols[3]) > 0  # a figure, not a pass/fail


def test_centre_sampler_is_bounded_and_even(ref_data: Path) -> None:
    from kestrel.fmv.report import CentreSampler, frame_centre_check
    from kestrel.fmv.scan import scan_klv

    scan = scan_klv(ref_data / "fmv" / "aphill_klv_10s.ts")
    full = frame_centre_check(scan)
    small = CentreSampler(cap=40)
    for p in scan.packets:
        small.add(p)
    s = small.summary()
    assert full["compared"] == 300 and full["sampled_every"] == 1
    assert s["compared"] <= 40 and s["sampled_every"] == 8 and s["records"] == len(small.kept)
    assert s["median_m"] == pytest.approx(full["median_m"], abs=2.0)


UL_0601 = bytes.fromhex("060e2b34020b01010e01030101000000")


def corrupt_one_set(src: Path, dst: Path, pid: int) -> None:
    """Flip a byte inside the first ST 0601 set carried on `pid` (its checksum then fails)."""
    data = bytearray(src.read_bytes())
    for off in range(0, len(data), 188):
        if ((data[off + 1] & 0x1F) << 8 | data[off + 2]) != pid:
            continue
        i = data.find(UL_0601, off, off + 188)
        if 0 <= i and i + 30 <= off + 188:
            data[i + 22] ^= 0xFF
            dst.write_bytes(data)
            return
    raise AssertionError("no ST 0601 set found on that PID")


def test_info_checksum_failures_per_klv_stream(ref_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Three KLV PIDs (sync 0x0101, async 0x0102, empty 0x0103); one damaged set on 0x0102 is
    reported on that stream, not only in the file total."""
    bad = tmp_path / "bad.ts"
    corrupt_one_set(ref_data / "fmv" / "h265_tricky_klv.ts", bad, 0x0102)
    rc, out, _ = run(["fmv", "info", str(bad)], capsys)
    assert rc == 0 and "checksum failures: 1," in out
    lines = {ln.split(":")[0].strip(): ln for ln in out.splitlines() if ln.startswith("  pid 0x") and "packets (" in ln}
    assert "30 packets (ST0601 30), checksum failures 0," in lines["pid 0x0101"]
    assert "60 packets (ST0601 60), checksum failures 1," in lines["pid 0x0102"]
    assert "0 packets (none), checksum failures 0," in lines["pid 0x0103"]


def test_info_flags_inconsistent_frame_centre(ref_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # KWIVER's test clips: the angles put the image centre ~11,566 km from the frame-centre tags.
    rc, out, _ = run(["fmv", "info", str(ref_data / "fmv" / "mpeg2_klv.ts")], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("frame centre"))
    assert rc == 0 and "inconsistent metadata (angles and frame-centre tags disagree)" in line
    assert "11565780" not in line and "11,566 km" in line
    rc, out, _ = run(["fmv", "check", str(ref_data / "fmv" / "mpeg2_klv.ts")], capsys)
    assert rc == 0 and "inconsistent metadata" in out
    # A consistent clip keeps its metres and no flag.
    rc, out, _ = run(["fmv", "info", str(ref_data / "fmv" / "aphill_klv_10s.ts")], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("frame centre"))
    assert rc == 0 and "inconsistent" not in line and " m, p90 " in line


def test_truncated_reason_is_the_last_line_through_a_pipe(ref_data: Path, tmp_path: Path) -> None:
    """As a user runs it: `kestrel fmv info cut.ts 2>&1 | tail -1` shows why it exited 2."""
    import os
    import subprocess
    import sys

    path = tmp_path / "cut.ts"
    path.write_bytes((ref_data / "fmv" / "h264_klv.ts").read_bytes()[:50_000])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered
    p = subprocess.run([sys.executable, "-c", "import sys; from kestrel.cli import main; sys.exit(main())",
                        "fmv", "info", str(path)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False)
    lines = p.stdout.splitlines()
    assert p.returncode == 2 and lines[0] == f"file: {path}"
    assert lines[-1].startswith(f"kestrel: error: {path}: truncated")
