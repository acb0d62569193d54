"""`kestrel ped run|review` end to end on synthetic STANAG 4609 clips and on bad input:
products, the VMTI re-mux decoded by our own decoder, no-KLV, corrupted TS, missing files,
live UDP input, and `--push` to our TEN server watched by a pytak client."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kestrel.cli import main as kestrel_main
from kestrel.ped.review import ReviewStore


def kestrel(*args: str) -> int:
    return kestrel_main(list(args))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clip")
    assert kestrel("fmv", "synth", str(d / "synth.ts"), "--seconds", "3", "--targets", "3", "--seed", "3",
                   "--truth", str(d / "truth.json")) == 0
    return d / "synth.ts"


@pytest.fixture(scope="module")
def run_dir(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert kestrel("ped", "run", str(clip), "--out", str(out)) == 0
    return out


def strip_klv(src: Path, dst: Path) -> None:
    """The same video with no data streams at all (packet copy)."""
    import av

    with av.open(str(src)) as ic, av.open(str(dst), "w", format="mpegts") as oc:
        vs = ic.streams.video[0]
        ov = oc.add_stream_from_template(vs)
        for pkt in ic.demux(vs):
            if pkt.dts is None:
                continue
            pkt.stream = ov
            oc.mux(pkt)


def test_products(run_dir: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    assert report["frames"] == 90 and report["frames_dropped"] == 0
    assert report["geolocated"] is True and report["geolocation_reason"] is None
    assert set(report["fps"]) >= {"decode", "detect", "geolocate", "track", "end_to_end"}
    assert report["tracks"] >= 3 and report["review"] == {"pending": report["tracks"]}
    assert {"tracks.geojson", "tracks.kml", "detections.csv", "vmti.ts", "ped.sqlite"} <= set(report["products"])
    fc = json.loads((run_dir / "tracks.geojson").read_text())
    lines = [f for f in fc["features"] if f["geometry"] and f["geometry"]["type"] == "LineString"]
    assert sum(len(f["geometry"]["coordinates"]) > 30 for f in lines) >= 3  # the three movers
    rows = list(csv.DictReader(open(run_dir / "detections.csv")))
    assert len(rows) == report["detections"] > 0 and all(r["lat"] for r in rows)
    with ReviewStore(run_dir, create=False) as st:
        assert len(st.platform()) == 90 and st.latest_platform().footprint  # type: ignore[union-attr]
        tracks = st.tracks()
    # every detection names the confirmed track it went to (empty: none); it is that track's point
    assert {int(r["track_id"]) for r in rows if r["track_id"]} == {t.id for t in tracks}
    points = {(p.frame, t.id) for t in tracks for p in t.points}
    assert all((int(r["frame"]), int(r["track_id"])) in points for r in rows if r["track_id"])


def test_vmti_remux_decodes_with_our_decoder(run_dir: Path) -> None:
    """VMTI as players expect it: ST 0903 nested in ST 0601 tag 74, on its own PID; the source's
    ST 0601 stays on the PID it had, packet for packet."""
    import av

    from kestrel.fmv.ingest import read_frames, scan_klv
    from kestrel.klv import st0601

    scan = scan_klv(str(run_dir / "vmti.ts"))
    ours = [p for p in scan.packets if 74 in p.tags]
    assert len(ours) == 90 and all(p.checksum_ok and p.set_name == "ST0601" for p in ours) and scan.stats.errors == 0
    vmti = [p.tags[74] for p in ours]
    assert all(v.set_name == "ST0903" for v in vmti)
    source = json.loads((run_dir / "report.json").read_text())["source"]
    src_scan = scan_klv(source)
    src_pid = {p.stream for p in src_scan.packets}
    assert len(src_pid) == 1 and {p.stream for p in ours}.isdisjoint(src_pid)
    kept = [p.raw for p in scan.packets if p.stream in src_pid]
    assert kept == [p.raw for p in src_scan.packets] and len(kept) > 0  # the original KLV, untouched
    with av.open(source) as a, av.open(str(run_dir / "vmti.ts")) as b:
        assert {s.id for s in a.streams} < {s.id for s in b.streams}  # every source PID is still there
    by_frame = {p.tags[7]: p for p in vmti}
    rows: dict[int, list[dict[str, str]]] = {}
    for r in csv.DictReader(open(run_dir / "detections.csv")):
        rows.setdefault(int(r["frame"]), []).append(r)
    with ReviewStore(run_dir, create=False) as st:
        track_ids = {t.id for t in st.tracks(points=False)}
    seen_track_ids = set()
    for frame, p in by_frame.items():
        targets = p.tags.get(101) or []
        assert p.tags[5] == len(targets) == len(rows.get(frame, []))
        for t, r in zip(targets, rows.get(frame, []), strict=True):
            r0, c0, r1, c1 = t.box(p.tags[8])
            assert abs(c0 - float(r["x1"])) <= 1 and abs(r0 - float(r["y1"])) <= 1
            assert abs(c1 - float(r["x2"])) <= 1 and abs(r1 - float(r["y2"])) <= 1
            loc = t.tags[17]
            assert loc["latitude"] == pytest.approx(float(r["lat"]), abs=1e-6)
            seen_track_ids.add(t.target_id)
    assert track_ids <= seen_track_ids  # tracked detections carry their track's id
    # Each VMTI packet is timed at its frame: frame n's KLV is what the demuxer attaches to frame n.
    times = {round(pt, 3) for pt in scan.at if pt is not None}
    frames = [round(f.pts, 3) for f in read_frames(str(run_dir / "vmti.ts"), with_images=False)]
    assert len(frames) == 90 and set(frames) == times
    assert ours[0].key == st0601.KEY


def test_review_cli(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    capsys.readouterr()
    assert kestrel("ped", "review", str(work)) == 0
    listing = capsys.readouterr().out
    assert "pending" in listing and listing.splitlines()[0].split()[:2] == ["id", "frames"]
    assert kestrel("ped", "review", str(work), "--confirm", "1", "--label", "vehicle", "--affiliation",
                   "hostile", "--analyst", "kim") == 0
    assert kestrel("ped", "review", str(work), "--reject", "2") == 0
    assert kestrel("ped", "review", str(work), "--confirm", "999") == 2
    capsys.readouterr()
    assert kestrel("ped", "review", str(work), "--confirm", "3") == 0  # no --label: done, and it says what is missing
    assert "--label vehicle|person|vessel" in capsys.readouterr().err
    assert kestrel("ped", "review", str(work), "--label", "vehicle") == 2
    capsys.readouterr()
    assert kestrel("ped", "review", str(work), "--json") == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[1]["review"] == "confirmed" and rows[1]["analyst"] == "kim" and rows[2]["review"] == "rejected"
    fc = json.loads((work / "tracks.geojson").read_text())  # products follow the review
    assert {f["properties"]["review"] for f in fc["features"] if f["properties"]["id"] == 1} == {"confirmed"}


def test_no_klv_still_tracks_in_pixels(clip: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.ts"
    strip_klv(clip, bare)
    out = tmp_path / "run"
    assert kestrel("ped", "run", str(bare), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["geolocated"] is False and "KLV" in report["geolocation_reason"]
    assert report["tracks"] >= 2
    with ReviewStore(out, create=False) as st:
        tracks = st.tracks()
        assert tracks and all(t.lat is None and len(t.points) > 10 for t in tracks)
    fc = json.loads((out / "tracks.geojson").read_text())
    assert fc["features"] and all(f["geometry"] is None for f in fc["features"])


def test_no_klv_reference_file(ref_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert kestrel("ped", "run", str(ref_data / "fmv/h264_no_klv.ts"), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] > 0 and report["geolocated"] is False
    assert report["geolocation_reason"] == "no KLV metadata in the stream"


def test_corrupted_ts_keeps_going(clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ts"
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    import random

    rnd = random.Random(7)
    data[mid : mid + 60_000] = bytes(rnd.getrandbits(8) for _ in range(60_000))
    bad.write_bytes(bytes(data))
    out = tmp_path / "run"
    assert kestrel("ped", "run", str(bad), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader(open(out / "detections.csv")))
    assert report["frames"] >= 60  # most of the 90 frames survive
    assert "error" not in report["vmti"] and report["vmti"]["vmti_packets"] == report["frames"]
    assert max(float(r["pts"]) for r in rows) > 2.5  # detections after the damage, near the end
    assert report["tracks"] >= 2


def test_bad_input_exit_2(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["ped", "run", str(tmp_path / "missing.ts"), "--out", str(tmp_path / "a")], "missing.ts: no such file"),
        (["ped", "run", str(clip), "--out", str(tmp_path / "b"), "--detector", "onnx", "--model",
          str(tmp_path / "nope.onnx")], "nope.onnx: model file not found"),
        (["ped", "run", str(clip), "--out", str(tmp_path / "c"), "--detector", "onnx"], "needs --model"),
    ]
    text = tmp_path / "notes.ts"
    text.write_text("this is not a video\n" * 500)
    cases.append((["ped", "run", str(text), "--out", str(tmp_path / "d")], "notes.ts"))
    for argv, msg in cases:
        capsys.readouterr()
        assert kestrel(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path / "d" / "ped.sqlite").exists()  # a failed run leaves no half store behind


def test_out_dir_with_a_run_is_not_overwritten(run_dir: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (run_dir / "ped.sqlite").stat().st_mtime_ns
    assert kestrel("ped", "run", str(clip), "--out", str(run_dir)) == 2
    assert "already holds a PED run" in capsys.readouterr().err
    assert (run_dir / "ped.sqlite").stat().st_mtime_ns == before


def test_live_udp_with_push(clip: Path, tmp_path: Path) -> None:
    """A live TS over UDP: processed until the feed goes quiet, dropped frames reported, and
    while it runs the platform and (release auto) unvalidated tracks reach a pytak client."""
    import asyncio

    from tests.ports import free_port
    from tests.test_server_support import Client, make_config, run, server_running

    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "live"

    def bound() -> bool:
        """True once `ped run` listens on the port (it binds with SO_REUSEADDR; a plain bind fails)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return True
            return False

    def send() -> None:
        deadline = time.monotonic() + 60
        while not bound():  # an event we poll for, not a guess of how long start-up takes
            assert time.monotonic() < deadline, "ped run never listened"
            time.sleep(0.05)
        data = clip.read_bytes()
        t0 = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(0, len(data), 1316):  # 7 TS packets per datagram, paced to the clip's 3 s
                tx.sendto(data[i : i + 1316], ("127.0.0.1", port))
                ahead = t0 + 3.0 * i / len(data) - time.monotonic()
                if ahead > 0.01:
                    time.sleep(ahead)

    async def scenario() -> None:
        async with server_running(make_config(tmp_path / "ten")) as server:
            url = f"tcp://127.0.0.1:{server.ports['tcp']}"
            watcher = await Client.connect(url)
            await watcher.drain(0.2)
            sender = threading.Thread(target=send)
            sender.start()
            rc = await asyncio.get_running_loop().run_in_executor(
                None, lambda: kestrel("ped", "run", f"udp://127.0.0.1:{port}", "--out", str(out), "--push", url,
                                      "--release", "auto", "--idle-timeout", "3"))
            sender.join()
            assert rc == 0
            sent = json.loads((out / "report.json").read_text())["push"]["sent"]
            got = [e for e in await _recv_pushed(watcher, sent) if not e.get("type", "").startswith("t-x-takp")]
            assert len(got) == sent
            types = [e.get("type") for e in got]
            assert types.count("a-f-A-M-F-Q") >= 2  # updated while live, not only at the end
            assert "u-d-f" in types and "a-u-G" in types
            await watcher.close()

    run(scenario(), timeout=300)  # a deadline for a loaded machine, not a sync
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] + report["frames_dropped"] >= 80
    assert report["vmti"] == {"skipped": "live source (no file to re-mux)"}
    assert report["tracks"] >= 1 and report["geolocated"] is True
    assert report["push"]["sent"] >= 6 and not report["push"]["errors"]


def test_run_push_to_ten_server(clip: Path, tmp_path: Path) -> None:
    """`ped run --push`: a pytak client on our server sees the UAV and its footprint; the run's
    unreviewed tracks only with --release auto, marked UNVALIDATED."""
    import asyncio

    from tests.test_server_support import Client, make_config, run, server_running, uid_of

    async def scenario() -> None:
        async with server_running(make_config(tmp_path / "ten")) as server:
            url = f"tcp://127.0.0.1:{server.ports['tcp']}"
            watcher = await Client.connect(url)
            await watcher.drain(0.2)
            loop = asyncio.get_running_loop()
            for out, extra in ((tmp_path / "plain", []), (tmp_path / "auto", ["--release", "auto"])):
                rc = await loop.run_in_executor(
                    None, lambda o=out, e=extra: kestrel("ped", "run", str(clip), "--out", str(o), "--no-vmti",
                                                         "--push", url, *e))
                assert rc == 0
                n_sent = json.loads((out / "report.json").read_text())["push"]["sent"]
                got = [e for e in await _recv_pushed(watcher, n_sent) if not e.get("type", "").startswith("t-x-takp")]
                types = sorted(e.get("type") for e in got)
                with ReviewStore(out, create=False) as st:
                    n = len([t for t in st.tracks(points=False) if t.lat is not None])
                    sent = json.loads((out / "report.json").read_text())["push"]
                if not extra:
                    assert types == ["a-f-A-M-F-Q", "u-d-f"]
                else:
                    assert types == ["a-f-A-M-F-Q", *["a-u-G"] * n, "u-d-f"] and n >= 3
                    for e in got:
                        if e.get("type") == "a-u-G":
                            assert e.find("detail/contact").get("callsign").startswith("UNVALIDATED")  # type: ignore[union-attr]
                            assert uid_of(e) in sent["uids"]
                assert sent["sent"] == len(got) and not sent["errors"]
            await watcher.close()

    run(scenario(), timeout=300)  # two PED runs: a deadline for a loaded machine, not a sync


def test_store_is_written_during_the_run(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second reader (the analyst) sees tracks and the platform path before the run ends."""
    from kestrel.ped import pipeline

    real_run = pipeline.run
    seen: list[tuple[int, int, int]] = []
    out = tmp_path / "run"

    def spying_run(*a: object, on_frame: object = None, **kw: object) -> object:
        def spy(u: object) -> None:
            on_frame(u)  # type: ignore[operator]
            if u.frame_index in (30, 75):  # type: ignore[attr-defined]
                with ReviewStore(out, create=False) as other:
                    seen.append((u.frame_index, len(other.tracks(points=False)), len(other.platform())))  # type: ignore[attr-defined]
        return real_run(*a, on_frame=spy, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run", spying_run)
    assert kestrel("ped", "run", str(clip), "--out", str(out), "--no-vmti") == 0
    assert [s[0] for s in seen] == [30, 75]
    assert seen[1][1] >= 2 and seen[1][2] >= 60  # flushed at ~2 s of video


def test_onnx_detector_through_the_cli(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_ped_detect_onnx import build_model

    model = build_model(tmp_path / "cells.onnx", "v8")
    out = tmp_path / "run"
    assert kestrel("ped", "run", str(clip), "--out", str(out), "--detector", "onnx", "--model", str(model),
                   "--max-frames", "10", "--no-vmti") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["detector"] == "onnx" and report["frames"] == 10
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 10)
    capsys.readouterr()
    assert kestrel("ped", "run", str(clip), "--out", str(tmp_path / "r2"), "--model", str(junk)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "junk.onnx" in err
    assert not (tmp_path / "r2" / "ped.sqlite").exists()


def test_ctrl_c_keeps_what_was_seen(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (how a live run is stopped) still leaves the store, products and a report."""
    from kestrel.ped import pipeline

    real_run = pipeline.run

    def interrupted_run(*a: object, on_frame: object = None, **kw: object) -> object:
        def spy(u: object) -> None:
            on_frame(u)  # type: ignore[operator]
            if u.frame_index == 70:  # type: ignore[attr-defined]
                raise KeyboardInterrupt
        return real_run(*a, on_frame=spy, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "run", interrupted_run)
    out = tmp_path / "run"
    assert kestrel("ped", "run", str(clip), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["frames"] == 71 and report["tracks"] >= 2
    assert report["vmti"] == {"skipped": "run interrupted"}
    rows = list(csv.DictReader(open(out / "detections.csv")))
    assert rows and max(int(r["frame"]) for r in rows) == 70
    assert json.loads((out / "tracks.geojson").read_text())["features"]


def test_udp_url_problems_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ordinary URLs a user types: a host name, an address of another machine, a bad port, a
    feed that never starts. Exit 2 with one line, no traceback, no half run left behind."""
    cases = [
        ("udp://192.0.2.1:5000", [], "udp://192.0.2.1:5000: cannot listen on 192.0.2.1:5000"),
        ("udp://127.0.0.1:99999", [], "udp://127.0.0.1:99999: bad port"),
        ("udp://localhost:0", ["--idle-timeout", "0.5"], "no data on udp://localhost:0 for 0.5 s"),
    ]
    for i, (url, extra, msg) in enumerate(cases):
        capsys.readouterr()
        out = tmp_path / f"r{i}"
        assert kestrel("ped", "run", url, "--out", str(out), *extra) == 2, url
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err and "Traceback" not in err, err
        assert not (out / "ped.sqlite").exists()


def test_idle_timeout_and_max_frames_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from kestrel.cli import build_parser

    args = build_parser().parse_args(["ped", "run", "udp://127.0.0.1:5000"])
    assert args.idle_timeout == 60.0 and args.out is None and args.video_url is None
    assert build_parser().parse_args(["ped", "run", "x.ts", "--idle-timeout", "0"]).idle_timeout == 0.0
    for bad in (["--max-frames", "0"], ["--max-frames", "-3"], ["--max-frames", "x"], ["--idle-timeout", "-1"],
                ["--video-url", "/home/me/clip.ts"], ["--video-url", "file:///home/me/clip.ts"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as ex:
            kestrel("ped", "run", "x.ts", *bad)
        assert ex.value.code == 2 and bad[0] in capsys.readouterr().err


def test_default_out_dir_and_no_file_link(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without --out the run goes to runs/<stem>-<UTC time> (printed); a file source is never
    stored as the video link, --video-url is."""
    import re

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert kestrel("ped", "run", str(clip), "--max-frames", "10", "--no-vmti") == 0
    out = capsys.readouterr().out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and re.fullmatch(r"synth-\d{8}T\d{6}Z", runs[0].name), runs
    rel = f"runs/{runs[0].name}"
    assert out.splitlines()[0] == f"run folder: {rel}" and out.splitlines()[1].startswith(f"{rel}: 10 frames")
    with ReviewStore(runs[0], create=False) as st:
        assert st.meta()["video_url"] is None
    feed = "rtsp://cam.example:8554/feed"
    assert kestrel("ped", "run", str(clip), "--out", "named", "--max-frames", "5", "--no-vmti",
                   "--video-url", feed) == 0
    with ReviewStore(tmp_path / "named", create=False) as st:
        assert st.meta()["video_url"] == feed


def test_default_out_dir_names() -> None:
    import datetime as dt

    from kestrel.ped.runner import default_out_dir

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert default_out_dir("/data/flight 7.ts", now) == Path("runs/flight-7-20260102T030405Z")
    assert default_out_dir("udp://239.1.2.3:5000", now) == Path("runs/udp-239.1.2.3-5000-20260102T030405Z")


async def _recv_pushed(watcher: Any, n: int, timeout: float = 60.0) -> list[Any]:
    """Read until `n` pushed events (not the server's protocol messages) arrived: waits on the
    events themselves, never on a quiet period."""
    count = 0

    def enough(e: Any) -> bool:
        nonlocal count
        count += not e.get("type", "").startswith("t-x-takp")
        return count >= n

    return list(await watcher.recv_until(enough, timeout)) if n else []
