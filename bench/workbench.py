"""Workbench speed: time to first frame, frame-step and seek latency, and 10 000 tracks in the list.

One command:  .venv/bin/python bench/workbench.py [--seconds 10] [--repeats 5] [--tracks 10000]

Makes a `kestrel fmv synth` clip (720x480, 30 fps, GOP 1 s) and a PED run on it, then measures,
each against a baseline measured in the same run (medians of --repeats rounds):
- first frame: a fresh `Workbench` in this process, HTTP GET of /api/runs/0 and frame 0's JPEG,
  against the floor: PyAV open + decode picture 0 + JPEG encode (no HTTP, no index).
- step: GET of frames N+1, N+2, ... (not cached) as the → key does, against PyAV decoding the
  next picture + JPEG encode.
- seek: GET of random frames (not cached), against PyAV decoding from the start up to that frame
  (what a player without a key-frame index does).
- 10 000 tracks (needs Chromium, else skipped with one line): a store with --tracks tracks of 30
  points; in the browser, page open until every row is in the list, and `j` (select the next
  track: row, overlay, timeline) until the next paint; baseline: the same with 100 tracks.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def med(xs: list[float]) -> float:
    return statistics.median(xs)


class Served:
    """A Workbench on a free loopback port in a background event loop."""

    def __init__(self, run_dir: Path) -> None:
        from kestrel.workbench.runs import Run
        from kestrel.workbench.server import Options, Workbench

        self.t0 = time.perf_counter()
        self.loop = asyncio.new_event_loop()
        self.wb = Workbench([Run(run_dir, 0)], Options(analyst="bench"))
        ready = threading.Event()
        self.port = 0

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.wb.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        ready.wait()
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=120) as r:
            return bytes(r.read())

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.wb.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def pyav_first(path: Path) -> float:
    import av
    import cv2

    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        fr = next(iter(c.decode(video=0)))
        cv2.imencode(".jpg", fr.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return time.perf_counter() - t0


def pyav_step(path: Path, start: int, n: int) -> list[float]:
    import av
    import cv2

    out = []
    with av.open(str(path)) as c:
        it = iter(c.decode(video=0))
        for _ in range(start + 1):
            next(it)
        for _ in range(n):
            t0 = time.perf_counter()
            fr = next(it)
            cv2.imencode(".jpg", fr.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
            out.append(time.perf_counter() - t0)
    return out


def pyav_from_start(path: Path, n: int) -> float:
    import av
    import cv2

    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i == n:
                cv2.imencode(".jpg", fr.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
                break
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def frames_bench(clip: Path, run: Path, repeats: int, frames: int) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    first, base_first = [], []
    steps, base_steps, seeks, base_seeks = [], [], [], []
    rng = random.Random(7)
    for r in range(repeats):
        base_first.append(pyav_first(clip))
        s = Served(run)
        try:
            t0 = time.perf_counter()
            s.get("/api/runs/0")
            s.get("/api/runs/0/frames/0.jpg")
            first.append(time.perf_counter() - t0)
            start = 5 + 40 * r
            steps += [timed(lambda n=n, s=s: s.get(f"/api/runs/0/frames/{n}.jpg")) for n in range(start + 1, start + 31)]
            base_steps += pyav_step(clip, start, 30)
            s.wb.runs[0].frames.build_index()  # the index the server builds in the background
            targets = [rng.randrange(frames) for _ in range(10)]
            seeks += [timed(lambda n=n, s=s: s.get(f"/api/runs/0/frames/{n}.jpg")) for n in targets]
            base_seeks += [pyav_from_start(clip, n) for n in targets]
        finally:
            s.close()
    rows.append(("time to first frame (open run + frame 0)", med(first), med(base_first)))
    rows.append(("frame step (→, next frame, uncached)", med(steps), med(base_steps)))
    rows.append(("seek to a random frame (uncached)", med(seeks), med(base_seeks)))
    return rows


def fake_run(src: Path, dst: Path, n_tracks: int) -> Path:
    """A copy of `src` whose store holds n_tracks synthetic tracks of 30 points each."""
    from kestrel.ped.review import ReviewStore, StoredPoint, StoredTrack

    dst.mkdir(parents=True)
    shutil.copy(src / "ped.sqlite", dst / "ped.sqlite")
    rng = random.Random(1)
    with ReviewStore(dst, create=False) as st:
        st._db.execute("DELETE FROM points")
        st._db.execute("DELETE FROM tracks")
        tracks = []
        for i in range(1, n_tracks + 1):
            f0 = rng.randrange(0, 250)
            x, y = rng.uniform(20, 700), rng.uniform(20, 460)
            pts = [StoredPoint(f0 + k, (f0 + k) / 30, x + k, y, 12, 8, 36.2 + rng.uniform(-.003, .003),
                               -115.9 + rng.uniform(-.003, .003)) for k in range(30)]
            tracks.append(StoredTrack(id=i, points=pts, frames=30, first_seen=pts[0].t, last_seen=pts[-1].t,
                                      lat=pts[-1].lat, lon=pts[-1].lon))
        st.upsert_tracks(tracks)
    return dst


def browser_bench(run: Path, tmp: Path, n_tracks: int, repeats: int) -> list[tuple[str, float, float]] | str:
    try:
        from tests.browser_support import CHROMEDRIVER, CHROMIUM, chromium
    except ImportError as exc:
        return f"skipped: {exc}"
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        return "skipped: no browser (apt-get install chromium chromium-driver)"
    from selenium.webdriver.support.ui import WebDriverWait

    big = fake_run(run, tmp / "big", n_tracks)
    small = fake_run(run, tmp / "small", 100)
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    key_js = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));
requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
"""
    with chromium() as d:
        d.set_script_timeout(300)
        for name, rd, n in (("big", big, n_tracks), ("small", small, 100)):
            s = Served(rd)
            loads, keys, nomap = [], [], []
            try:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    d.get(s.url + "/#frame=0")
                    WebDriverWait(d, 120, poll_frequency=0.01).until(
                        lambda d, n=n: d.execute_script("return document.querySelectorAll('[data-track-id]').length") == n)
                    loads.append(time.perf_counter() - t0)
                    keys += [d.execute_async_script(key_js) / 1000 for _ in range(8)]
                    # The list alone (row, overlay, timeline, detail): the map off. Headless Chromium
                    # renders WebGL in software (SwiftShader), which a real GPU does not.
                    d.execute_script("const a = window.kestrel.app; if (a.map) { a.map.map.remove(); a.map = null; }"
                                     " document.getElementById('map').hidden = true;")
                    nomap += [d.execute_async_script(key_js) / 1000 for _ in range(8)]
            finally:
                s.close()
            results[name] = (loads, keys, nomap)
    return [
        (f"open page until all {n_tracks} rows listed (vs 100)", med(results["big"][0]), med(results["small"][0])),
        (f"j: select next of {n_tracks} tracks, to next paint (vs 100)", med(results["big"][1]), med(results["small"][1])),
        (f"j, map off (list, overlay, timeline) {n_tracks} (vs 100)", med(results["big"][2]), med(results["small"][2])),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tracks", type=int, default=10_000)
    args = ap.parse_args()
    from kestrel.cli import main as kestrel

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as td:
        tmp = Path(td)
        clip, run = tmp / "clip.ts", tmp / "run"
        assert kestrel(["fmv", "synth", str(clip), "--seconds", str(args.seconds), "--targets", "3", "--seed", "7"]) == 0
        assert kestrel(["ped", "run", str(clip), "--out", str(run), "--no-vmti"]) == 0
        frames = int(args.seconds * 30)
        rows = frames_bench(clip, run, args.repeats, frames)
        more = browser_bench(run, tmp, args.tracks, max(args.repeats // 2, 2))
    print(f"\nworkbench, 720x480 H.264 clip of {frames} frames, medians of {args.repeats} rounds "
          f"(load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())})")
    print(f"| {'measure':<58} | {'workbench ms':>12} | {'baseline ms':>11} | {'ratio':>6} |")
    print(f"|{'-' * 60}|{'-' * 14}|{'-' * 13}|{'-' * 8}|")
    for name, v, b in rows + (more if isinstance(more, list) else []):
        print(f"| {name:<58} | {v * 1000:>12.1f} | {b * 1000:>11.1f} | {v / b:>6.2f} |")
    print("baselines: PyAV open+decode+JPEG of frame 0; PyAV next picture+JPEG; PyAV decode from the start "
          "to the frame; the same page with 100 tracks")
    if isinstance(more, str):
        print(f"10 000 tracks in the browser: {more}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
