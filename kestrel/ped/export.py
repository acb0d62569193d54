"""Products a person looks at: `kestrel ped export RUN --video annotated.mp4 --report report.html`.

- The annotated video: every picture of the source (frame N = the N-th decoded picture, the
  numbering the store uses) with each stored box, its id, label and verdict burned in; H.264 MP4.
  One decode and one encode pass; O(frames + points) memory for the boxes only.
- The report: one self-contained HTML file (no script, no remote fetch): an SVG map of the
  platform path, the stored footprints and the track paths coloured by verdict, a thumbnail per
  track (JPEG data URI cut from its middle frame), the review table with analyst and time, and the
  audit trail. Opens in any browser, offline, for briefings and for those without the workbench.
"""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kestrel.ped.products import atomic_write
from kestrel.ped.review import PlatformState, ReviewStore, StoredTrack

LIVE_SCHEMES = ("udp://", "rtp://", "srt://", "tcp://")
STATE_BGR = {"pending": (52, 177, 242), "confirmed": (128, 209, 47), "rejected": (163, 148, 138)}
STATE_HEX = {"pending": "#f2b134", "confirmed": "#2fd180", "rejected": "#8a94a3"}


def find_video(run_dir: Path, meta: dict[str, Any]) -> tuple[Path | None, str | None]:
    """The run's source video file, or (None, why not). Tries the absolute path recorded at run
    time, then the source as given (from here, the run folder, the folder holding it); a live
    run has pictures only if it was recorded to RUN_DIR/source.ts."""
    source = str(meta.get("source") or "")
    if source.startswith(LIVE_SCHEMES):
        rec = run_dir / "source.ts"
        if rec.is_file():
            return rec, None
        return None, f"live source {source} was not recorded to a file: no pictures, tracks only"
    if not source:
        return None, "the run does not name its source video"
    candidates = [Path(str(meta["source_path"]))] if meta.get("source_path") else []
    s = Path(source)
    candidates += [s] if s.is_absolute() else [s, run_dir / s, run_dir.resolve().parent / s]
    for c in candidates:
        if c.is_file():
            return c, None
    return None, f"source video {source} not found (moved?); pictures unavailable"


def _pictures(video: Path) -> Iterator[tuple[int, Any, Any]]:
    """(index, BGR image, stream) for every decoded picture, numbered like fmv.frames/VideoReader."""
    import av

    from kestrel.fmv.frames import _decode

    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        for i, fr in enumerate(_decode(c, vs, av)):
            yield i, fr.to_ndarray(format="bgr24"), vs


def _boxes_by_frame(tracks: list[StoredTrack]) -> dict[int, list[tuple[StoredTrack, Any]]]:
    out: dict[int, list[tuple[StoredTrack, Any]]] = defaultdict(list)
    for t in tracks:
        for p in t.points:
            out[p.frame].append((t, p))
    return out


def draw_boxes(img: Any, boxes: list[tuple[StoredTrack, Any]]) -> None:
    import cv2

    for t, p in boxes:
        colour = STATE_BGR.get(t.state, STATE_BGR["pending"])
        x1, y1 = int(round(p.x - p.w / 2)), int(round(p.y - p.h / 2))
        x2, y2 = int(round(p.x + p.w / 2)), int(round(p.y + p.h / 2))
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
        text = f"#{t.id} {t.label}" + ("" if t.state == "pending" else f" {t.state}")
        org = (x1, max(y1 - 5, 12))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def export_video(store: ReviewStore, video: Path, out: Path) -> int:
    """Write the annotated MP4; returns the number of frames written."""
    import av

    by_frame = _boxes_by_frame(store.tracks())
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    n = 0
    try:
        with av.open(str(tmp), "w", format="mp4") as oc:
            enc: Any = None
            for i, img, vs in _pictures(video):
                if enc is None:
                    rate = vs.average_rate or 30
                    enc = oc.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "veryfast"})
                    enc.width, enc.height, enc.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
                draw_boxes(img, by_frame.get(i, []))
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                oc.mux(enc.encode(frame))
                n += 1
            if enc is not None:
                oc.mux(enc.encode(None))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return n


# ---- report.html ---------------------------------------------------------------------------------
def _thumbnails(tracks: list[StoredTrack], video: Path | None, size: int = 112) -> dict[int, str]:
    """track id -> JPEG data URI of its box (with context) on its middle frame."""
    if video is None:
        return {}
    import cv2

    want: dict[int, list[tuple[StoredTrack, Any]]] = defaultdict(list)
    for t in tracks:
        if t.points:
            p = t.points[len(t.points) // 2]
            want[p.frame].append((t, p))
    out: dict[int, str] = {}
    last = max(want, default=-1)
    for i, img, _ in _pictures(video):
        for t, p in want.get(i, []):
            half = max(p.w, p.h, 24.0) * 1.6
            x1, y1 = max(int(p.x - half), 0), max(int(p.y - half), 0)
            x2, y2 = min(int(p.x + half), img.shape[1]), min(int(p.y + half), img.shape[0])
            crop = img[y1:y2, x1:x2].copy()
            draw_boxes(crop, [(t, type(p)(p.frame, p.t, p.x - x1, p.y - y1, p.w, p.h))])
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                out[t.id] = "data:image/jpeg;base64," + base64.b64encode(bytes(buf)).decode()
        if i >= last:
            break
    return out


def map_svg(tracks: list[StoredTrack], platform: list[PlatformState], width: int = 860, height: int = 520) -> str:
    """An SVG map (local equirectangular projection, north up, with a scale bar)."""
    pts: list[tuple[float, float]] = []
    pts += [(p.lat, p.lon) for p in platform if p.lat is not None and p.lon is not None]
    for p in platform:
        pts += p.footprint or []
    for t in tracks:
        pts += t.ground_path
    if not pts:
        return '<p class="muted">No map: the run is not geolocated (no usable KLV sensor metadata).</p>'
    lat0 = sum(a for a, _ in pts) / len(pts)
    kx = math.cos(math.radians(lat0)) * 111_320.0
    ky = 110_540.0
    xs = [lo * kx for _, lo in pts]
    ys = [la * ky for la, _ in pts]
    pad = 24
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    s = min((width - 2 * pad) / max(max(xs) - min(xs), 1e-6), (height - 2 * pad) / max(max(ys) - min(ys), 1e-6),
            (width - 2 * pad) / span * 4)
    x0, y1 = min(xs), max(ys)

    def xy(lat: float, lon: float) -> str:
        return f"{(lon * kx - x0) * s + pad:.1f},{(y1 - lat * ky) * s + pad:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="map">',
             f'<rect width="{width}" height="{height}" fill="#10161d"/>']
    for p in platform:
        if p.footprint:
            parts.append(f'<polygon points="{" ".join(xy(a, b) for a, b in p.footprint)}" fill="#3fa7ff" '
                         'fill-opacity="0.05" stroke="#3fa7ff" stroke-opacity="0.35" stroke-width="1"/>')
    path = [(p.lat, p.lon) for p in platform if p.lat is not None and p.lon is not None]
    if len(path) >= 2:
        parts.append(f'<polyline points="{" ".join(xy(a, b) for a, b in path)}" fill="none" stroke="#c7d2de" '
                     'stroke-width="1.5" stroke-dasharray="5 4"/>')
        parts.append(f'<circle r="5" fill="#fff" stroke="#3fa7ff" stroke-width="2" cx="{xy(*path[-1]).split(",")[0]}" '
                     f'cy="{xy(*path[-1]).split(",")[1]}"><title>platform (last position)</title></circle>')
    for t in tracks:
        g = t.ground_path
        if not g:
            continue
        c = STATE_HEX.get(t.state, STATE_HEX["pending"])
        if len(g) >= 2:
            parts.append(f'<polyline points="{" ".join(xy(a, b) for a, b in g)}" fill="none" stroke="{c}" stroke-width="2.5"/>')
        hx, hy = xy(*g[-1]).split(",")
        parts.append(f'<circle cx="{hx}" cy="{hy}" r="4" fill="{c}" stroke="#000"><title>track {t.id}: {t.state}'
                     f'</title></circle><text x="{float(hx) + 6:.1f}" y="{float(hy) - 6:.1f}" fill="{c}" '
                     f'font-size="12" font-family="sans-serif">#{t.id}</text>')
    # scale bar: a round number of metres about a fifth of the width
    metres = (width / 5) / s
    nice = 10 ** math.floor(math.log10(metres))
    nice *= 5 if metres / nice >= 5 else 2 if metres / nice >= 2 else 1
    bar = nice * s
    parts.append(f'<g font-size="11" font-family="sans-serif" fill="#c7d2de"><rect x="{pad}" y="{height - 16}" '
                 f'width="{bar:.1f}" height="3" fill="#c7d2de"/><text x="{pad}" y="{height - 20}">{nice:g} m</text>'
                 f'<text x="{width - pad - 10}" y="{pad + 4}">N↑</text></g>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;background:#0d1117;color:#d6dde6;margin:24px;max-width:1100px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:22px 0 8px;color:#3fa7ff}
.muted{color:#7d8a99} table{border-collapse:collapse;width:100%} th,td{padding:4px 8px;border-bottom:1px solid #2b3440;
text-align:left;vertical-align:middle} th{color:#7d8a99;font-weight:600;font-size:11px;text-transform:uppercase}
.map{width:100%;height:auto;border:1px solid #2b3440} img.thumb{width:84px;height:84px;border:1px solid #2b3440}
.pending{color:#f2b134}.confirmed{color:#2fd180}.rejected{color:#8a94a3}
.sum span{margin-right:16px}
"""


def report_html(store: ReviewStore, video: Path | None) -> str:
    from kestrel.ped.products import iso_utc

    meta = store.meta()
    tracks = store.tracks()
    platform = store.platform()
    thumbs = _thumbnails(tracks, video)
    e = html.escape
    counts = {s: sum(1 for t in tracks if t.state == s) for s in ("pending", "confirmed", "rejected")}
    rows = []
    for t in tracks:
        first = t.points[0].frame if t.points else None
        last = t.points[-1].frame if t.points else None
        img = f'<img class="thumb" alt="track {t.id}" src="{thumbs[t.id]}">' if t.id in thumbs else ""
        pos = f"{t.lat:.6f}, {t.lon:.6f}" if t.lat is not None and t.lon is not None else "pixels only"
        speed = f"{t.speed:.1f}" if t.speed is not None else "–"
        rows.append(f'<tr data-track-id="{t.id}"><td>{img}</td><td>#{t.id}</td><td class="{e(t.state)}">{e(t.state)}</td>'
                    f"<td>{e(t.label)}</td><td>{e(t.affiliation)}</td><td>{e(t.analyst or '')}</td>"
                    f"<td>{e(t.reviewed_at or '')}</td><td>{first}–{last}</td><td>{speed}</td><td>{pos}</td></tr>")
    audit = store.audit()
    arows = "".join(
        f"<tr><td>{e(a['at'])}</td><td>{e(a['analyst'] or '')}</td><td>#{a['track_id']}</td><td>{e(a['action'] or 'review')}"
        f"</td><td class=\"{e(a['state'])}\">{e(a['state'])}</td><td>{e(a['label'] or '')}</td>"
        f"<td>{e(a['affiliation'] or '')}</td><td>{'' if a['frame'] is None else a['frame']}</td></tr>" for a in audit)
    t0 = next((p.utc for p in platform if p.utc is not None), None)
    geo = "geolocated" if meta.get("geolocated") else f"not geolocated ({e(str(meta.get('geolocation_reason')))})"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kestrel PED report: {e(str(meta.get('source', '')))}</title>
<style>{_CSS}</style></head><body>
<h1>Kestrel PED report</h1>
<div class="muted">Source {e(str(meta.get('source', '')))} · run {e(str(meta.get('run_id', '')))} · started
{e(str(meta.get('started', '')))} · video time {e(iso_utc(t0) or 'unknown')} · {geo}</div>
<p class="sum"><span>{len(tracks)} tracks</span><span class="confirmed">{counts['confirmed']} confirmed</span>
<span class="rejected">{counts['rejected']} rejected</span><span class="pending">{counts['pending']} pending (not validated)</span></p>
<h2>Map: platform path, image footprints, tracks by verdict</h2>
{map_svg(tracks, platform)}
<h2>Tracks and the analyst's review</h2>
<table><tr><th></th><th>track</th><th>verdict</th><th>label</th><th>affiliation</th><th>analyst</th><th>decided (UTC)</th>
<th>frames</th><th>m/s</th><th>last position</th></tr>
{''.join(rows) or '<tr><td colspan="10" class="muted">no tracks</td></tr>'}</table>
<h2>Audit trail</h2>
<table><tr><th>time (UTC)</th><th>analyst</th><th>track</th><th>action</th><th>verdict</th><th>label</th><th>affiliation</th>
<th>at frame</th></tr>{arows or '<tr><td colspan="8" class="muted">no decisions yet</td></tr>'}</table>
<p class="muted">Made by kestrel ped export. Pending tracks are machine output an analyst has not validated.</p>
</body></html>
"""


def export_report(store: ReviewStore, video: Path | None, out: Path) -> None:
    atomic_write(out, report_html(store, video).encode())
