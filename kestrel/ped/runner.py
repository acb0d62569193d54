"""`kestrel ped run` end to end: pipeline -> review store -> products -> (optional) CoT push.

The store is written while the run goes (every ~2 s of video: live tracks and the platform
path, one transaction each), so an analyst can review a live run and a crash loses at most the
last batch. Products are re-made from the store, so they always show the latest verdicts
(`refresh_products` after every review). On a live source with `--push`, the platform,
footprint and already-confirmed tracks go out about once a second while the run goes on.
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kestrel.ped import cot
from kestrel.ped.products import write_detections_csv, write_geojson, write_json, write_kml
from kestrel.ped.review import PlatformState, ReviewStore, stored_from_track, utc_now

LIVE_SCHEMES = ("udp://", "rtp://", "srt://", "tcp://")
FLUSH_EVERY_S = 2.0  # media seconds between store writes during a run
FOOTPRINT_EVERY_S = 1.0  # media seconds between stored footprints (each costs a few ray casts)
LIVE_PUSH_EVERY_S = 1.0  # wall seconds between live pushes
PRODUCTS = ("ped.sqlite", "tracks.geojson", "tracks.kml", "detections.csv", "report.json", "vmti.ts")


def _bad(msg: str) -> Exception:
    from kestrel.errors import BadInput

    return BadInput(msg)


def platform_state(frame_index: int, pts: float, md: Any, sensor: Any, with_footprint: bool) -> PlatformState:
    """The platform row for one frame from its SensorMetadata and (optional) sensor model."""
    fp: list[tuple[float, float]] | None = None
    if with_footprint and sensor is not None:
        try:
            fp = [(float(a), float(b)) for a, b in sensor.footprint()] or None
        except Exception:  # a geometry with no ground in view: no footprint, never a failed run
            fp = None
    if fp is None and with_footprint and md.corners and len(md.corners) == 4:
        fp = [(float(a), float(b)) for a, b in md.corners]
    return PlatformState(
        frame=frame_index, t=pts, utc=md.time_us / 1e6 if md.time_us is not None else None,
        lat=md.sensor_lat, lon=md.sensor_lon, alt=md.sensor_alt, heading=md.platform_heading,
        pitch=md.platform_pitch, roll=md.platform_roll, sensor_az=md.sensor_rel_az, sensor_el=md.sensor_rel_el,
        sensor_roll=md.sensor_rel_roll, hfov=md.hfov, vfov=md.vfov, slant_range=md.slant_range, footprint=fp,
    )


def _is_live(source: str) -> bool:
    return source.startswith(LIVE_SCHEMES)


def _check_inputs(source: str, out: Path, detector: str, model: str | None) -> None:
    if not _is_live(source):
        p = Path(source)
        if not p.exists():
            raise _bad(f"{source}: no such file")
        if not p.is_file():
            raise _bad(f"{source}: not a file")
    if detector == "onnx" and not model:
        raise _bad("--detector onnx needs --model FILE.onnx")
    if model is not None and not Path(model).is_file():
        raise _bad(f"{model}: model file not found")
    if (out / "ped.sqlite").exists():
        raise _bad(f"{out}: already holds a PED run (ped.sqlite); choose another --out")
    if out.exists() and not out.is_dir():
        raise _bad(f"{out}: exists and is not a folder")


class _Recorder:
    """on_frame sink: keeps the platform path and UTC per frame, flushes to the store, pushes live."""

    def __init__(self, store: ReviewStore, pusher: Any, opts: cot.CotOptions | None) -> None:
        self.store, self.pusher, self.opts = store, pusher, opts
        self.utc_us: dict[int, int] = {}
        self.platform: list[PlatformState] = []
        self.last: tuple[int, float, Any, Any] | None = None
        self._fp_t = -1e9
        self._flush_t = 0.0
        self._push_wall = 0.0
        self._tracks: dict[int, Any] = {}
        self.detections: list[Any] = []
        self.frames = 0
        self.geolocated = False

    def __call__(self, u: Any) -> None:
        pts = float(u.pts) if u.pts is not None else 0.0
        md = u.metadata
        self.frames += 1
        self.detections.append(u.detections)
        self.geolocated = self.geolocated or u.sensor is not None
        for t in u.tracks:
            self._tracks[t.id] = t
        if md is not None:
            if md.time_us is not None:
                self.utc_us[u.frame_index] = int(md.time_us)
            name = md.platform_designation
            if name and self.opts is not None and self.opts.platform_id != name:  # the KLV says who flies
                self.opts = replace(self.opts, platform_id=name)
                self.store.set_meta(platform_id=name)
            with_fp = pts - self._fp_t >= FOOTPRINT_EVERY_S
            st = platform_state(u.frame_index, pts, md, u.sensor, with_fp)
            if st.footprint:
                self._fp_t = pts
            self.platform.append(st)
            self.last = (u.frame_index, pts, md, u.sensor)
        if pts - self._flush_t >= FLUSH_EVERY_S:
            self.flush()
            self._flush_t = pts
        if self.pusher is not None and self.opts is not None and time.monotonic() - self._push_wall >= LIVE_PUSH_EVERY_S:
            self._push_wall = time.monotonic()
            self.push_live()

    def flush(self) -> None:
        if self.platform:
            self.store.add_platform(self.platform)
            self.platform = []
        if self._tracks:
            self.store.upsert_tracks([self.stored(t) for t in self._tracks.values()])
            self._tracks = {}

    def stored(self, track: Any) -> Any:
        st = stored_from_track(track)
        if st.points:
            a, b = self.utc_us.get(st.points[0].frame), self.utc_us.get(st.points[-1].frame)
            st.first_utc = a / 1e6 if a is not None else None
            st.last_utc = b / 1e6 if b is not None else None
        return st

    def interrupted_report(self) -> dict[str, Any]:
        """What report.json can say when the pipeline never returned (Ctrl-C on a live run)."""
        return {"interrupted": True, "frames": self.frames, "frames_dropped": None,
                "detections": int(sum(len(d) for d in self.detections)), "geolocated": self.geolocated,
                "geolocation_reason": None if self.geolocated else "no usable sensor model before the interrupt"}

    def final_platform(self) -> None:
        """Make sure the last frame's footprint is stored (that is what dissemination shows)."""
        if self.last is not None:
            idx, pts, md, sensor = self.last
            self.platform.append(platform_state(idx, pts, md, sensor, True))

    def push_live(self) -> None:
        """Platform and footprint of the newest metadata (whether or not that frame's stored row
        has a footprint), releasable tracks, retractions of tracks rejected since."""
        assert self.opts is not None
        if self.platform:
            self.store.add_platform(self.platform)
            self.platform = []
        now = None
        if self.last is not None:
            idx, pts, md, sensor = self.last
            now = platform_state(idx, pts, md, sensor, True)
            if self.opts.image_width is None and sensor is not None:
                self.opts = replace(self.opts, image_width=int(sensor.width))
        batch = dissemination(self.store, self.opts, platform=now)
        self.pusher.offer(batch.events)
        self.store.mark_disseminated(batch.shown, batch.retracted)  # live: queued counts as sent


def default_out_dir(source: str, now: dt.datetime | None = None, root: Path = Path("runs")) -> Path:
    """`runs/<input stem>-<UTC yyyymmddThhmmssZ>`; a URL's stem is its scheme, host and port."""
    now = now or dt.datetime.now(dt.UTC)
    if _is_live(source) or "://" in source:
        u = urlsplit(source)
        stem = f"{u.scheme}-{u.netloc}"
    else:
        stem = Path(source).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "run"
    return root / f"{stem}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def _open_live(source: str, idle_timeout: float) -> Any:
    """Listen on a udp:// source now, before anything is written: a URL that cannot be listened
    on is a one-line BadInput. Other live schemes are left to the reader (it names what it takes)."""
    if not source.startswith("udp://"):
        return None
    from kestrel.fmv.frame import FmvInputError
    from kestrel.fmv.live import UdpSource

    try:
        return UdpSource.from_url(source, idle_timeout=idle_timeout)
    except FmvInputError as exc:
        raise _bad(str(exc)) from None


def run_to_dir(source: str, out: Path, *, detector: str = "mti", model: str | None = None,
               max_frames: int | None = None, vmti: bool = True, push: str | None = None,
               ssl_ctx: ssl.SSLContext | None = None, release_auto: bool = False,
               callsign: str = "KESTREL-UAV", stale_s: float = 600.0, idle_timeout: float = 60.0,
               video_url: str | None = None, restream: Any = None) -> dict[str, Any]:
    """Run PED on `source` into folder `out`; returns report.json's content.

    `idle_timeout`: a live source ends after that many seconds without data (0 = never).
    `video_url`: the link track events carry; default: the source if it is a stream other
    machines can open (`cot.shareable_video_url`), else none (never a local file path).
    `restream`: a `ped.restream.Restream` that also gets the source's bytes, unchanged."""
    from kestrel.fmv.frame import FmvInputError
    from kestrel.fmv.ingest import VideoReader
    from kestrel.ped import pipeline
    from kestrel.ped.disseminate import Pusher, parse_target

    source = str(source)
    _check_inputs(source, out, detector, model)
    live = _is_live(source)
    udp = _open_live(source, idle_timeout) if live else None
    try:
        store = ReviewStore(out)
    except BaseException:
        if udp is not None:
            udp.close()
        raise
    run_id = uuid.uuid4().hex[:12]
    video_url = video_url or cot.shareable_video_url(source)
    store.set_meta(run_id=run_id, source=source, video_url=video_url, started=utc_now(), detector=detector,
                   source_path=None if live else str(Path(source).resolve()))  # the workbench finds the video
    opts = cot.CotOptions(run_id, callsign=callsign, video_url=video_url, stale_s=stale_s, release_auto=release_auto,
                          platform_id=source)
    pusher = Pusher(parse_target(push), ssl_ctx) if push else None
    rec = _Recorder(store, pusher if live else None, opts)
    failed: str | None = None
    batch: Batch | None = None
    try:
        result: Any = None
        try:
            reader_src: Any = udp if udp is not None else source
            if restream is not None:  # --restream: the same TS bytes also go out, unchanged
                reader_src = restream.tee(reader_src)
            frames: Any = VideoReader(reader_src, idle_timeout=idle_timeout)
            result = pipeline.run(frames, detector=detector, model=model, max_frames=max_frames, live=live,
                                  on_frame=rec)
        except KeyboardInterrupt:  # Ctrl-C is how a live run ends: keep and publish what was seen
            if rec.frames == 0:
                failed = "interrupted"
                raise
        except FmvInputError as exc:
            failed = str(exc)
            raise _bad(failed) from None
        except BaseException as exc:  # bad model (BadInput), interrupted, ...: cleaned up below
            failed = f"{type(exc).__name__}: {exc}"
            raise
        rec.final_platform()
        rec.flush()
        if result is not None:
            store.upsert_tracks([rec.stored(t) for t in result.tracks])
            store.set_meta(finished=utc_now(), geolocated=result.geolocated,
                           geolocation_reason=result.geolocation_reason, width=result.width, height=result.height)
            report = result.report()
        else:
            report = rec.interrupted_report()
        write_detections_csv(out / "detections.csv", rec.detections)
        report.update(source=source, run_id=run_id, started=store.meta()["started"], finished=utc_now())
        report["tracks"] = len(store.tracks(points=False))
        if result is None:
            report["vmti"] = {"skipped": "run interrupted"}
        elif vmti and not live:
            try:
                report["vmti"] = write_vmti(source, out, result, rec.utc_us)
            except Exception as exc:  # a product failing must not lose the run's other results
                report["vmti"] = {"error": f"{type(exc).__name__}: {exc}"}
        elif live:
            report["vmti"] = {"skipped": "live source (no file to re-mux)"}
        refresh_products(store)
        if pusher is not None:
            batch = dissemination(store, _opts(store, release_auto, callsign, stale_s, video_url))
            pusher.offer(batch.events)
    finally:
        if udp is not None:
            udp.close()
        if restream is not None:
            restream.close()
        push_report = pusher.close() if pusher is not None else None
        if push_report is not None and batch is not None:
            _record(store, batch, set(push_report.uids))
        empty = failed is not None and not store.tracks(points=False) and not store.platform()
        store.close()
        if empty:  # failed before any result: leave no half run behind, so the same --out works again
            for suffix in ("", "-wal", "-shm"):
                (out / f"ped.sqlite{suffix}").unlink(missing_ok=True)
    if push_report is not None:
        report["push"] = push_report.as_dict()
    states = Counter(t.state for t in ReviewStore(out).tracks(points=False))
    report["review"] = dict(states)
    report["products"] = sorted({"report.json", *(n for n in PRODUCTS if (out / n).exists())})
    write_json(out / "report.json", report)
    return report


def write_vmti(source: str, out: Path, result: Any, utc_us: dict[int, int]) -> dict[str, Any]:
    from kestrel.ped.vmti import write_vmti_ts

    return write_vmti_ts(source, out / "vmti.ts", result.detections, result.tracks, result.width,
                         result.height, utc_us)


def refresh_products(store: ReviewStore) -> None:
    """Re-make tracks.geojson and tracks.kml from the store (after a run or a review)."""
    tracks = store.tracks()
    write_geojson(store.run_dir / "tracks.geojson", tracks)
    write_kml(store.run_dir / "tracks.kml", tracks, store.platform())


def _opts(store: ReviewStore, release_auto: bool, callsign: str, stale_s: float,
          video_url: str | None = None) -> cot.CotOptions:
    """`video_url` (the user's) wins; else the run's own, if shareable (older runs stored file:// URLs)."""
    meta = store.meta()
    url = video_url or cot.shareable_video_url(meta.get("video_url"))
    return cot.CotOptions(meta.get("run_id", "run"), callsign=callsign, video_url=url,
                          stale_s=stale_s, release_auto=release_auto,
                          platform_id=meta.get("platform_id") or meta.get("source"), image_width=meta.get("width"))


@dataclass(slots=True)
class Batch:
    """One dissemination: the events, which tracks they put on the map, which they retract."""

    events: list[Any]
    shown: dict[int, tuple[str, str]]  # track id -> (uid, type)
    retracted: list[int]
    unlocated: int = 0  # releasable tracks not sent: no ground position


def dissemination(store: ReviewStore, opts: cot.CotOptions, now_ms: int | None = None,
                  platform: PlatformState | None = None) -> Batch:
    """Platform, footprint, releasable tracks, and a delete for every track pushed earlier that
    is no longer releasable (rejected since, or pending without release auto). `platform`: the
    newest state (live runs), else the store's latest."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    states = ["confirmed", "pending"] if opts.release_auto else ["confirmed"]
    tracks = store.tracks(states, points=False)
    if platform is not None and platform.lat is not None:
        speed = store.latest_platform()
        platform.speed = speed.speed if speed is not None else None
    else:
        platform = store.latest_platform()
    events = cot.run_events(platform, tracks, opts, now_ms)
    shown: dict[int, tuple[str, str]] = {}
    prefix = opts.track_uid(0)[:-1]
    for ev in events:
        if ev.uid.startswith(prefix):
            shown[int(ev.uid[len(prefix):])] = (ev.uid, ev.type)
    retracted = [tid for tid in store.disseminated() if tid not in shown]
    before = store.disseminated()
    events += [cot.delete_event(before[tid][0], before[tid][1], opts, now_ms) for tid in retracted]
    return Batch(events, shown, retracted, sum(1 for t in tracks if not t.geolocated))


def disseminate_run(store: ReviewStore, push: str | None, *, ssl_ctx: ssl.SSLContext | None = None,
                    release_auto: bool = False, callsign: str = "KESTREL-UAV",
                    stale_s: float = 600.0, video_url: str | None = None) -> dict[str, Any] | list[bytes]:
    """Send a finished run's platform, footprint and confirmed (or, with release_auto, pending)
    tracks. push=None: return the encoded events instead (dry run). `video_url`: the link track
    events carry (default: the run's source if it is a shareable stream)."""
    from kestrel.ped.disseminate import encode
    from kestrel.ped.disseminate import push as push_events

    batch = dissemination(store, _opts(store, release_auto, callsign, stale_s, video_url))
    if push is None:
        return [data for _, data in encode(batch.events)]
    rep = push_events(push, batch.events, ssl_ctx)
    _record(store, batch, set(rep.uids))
    report = rep.as_dict()
    report["not_geolocated"] = batch.unlocated
    store.set_meta(last_push={"at": dt.datetime.now(dt.UTC).isoformat(), **report})
    return report


def _record(store: ReviewStore, batch: Batch, sent_uids: set[str]) -> None:
    """Remember what is on the map now; only what really went out counts."""
    shown = {tid: v for tid, v in batch.shown.items() if v[0] in sent_uids}
    before = store.disseminated()
    gone = [tid for tid in batch.retracted if f"{before[tid][0]}-delete" in sent_uids]
    store.mark_disseminated(shown, gone)
