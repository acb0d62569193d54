"""CoT events for PED dissemination: the platform (UAV with a sensor field of view), the image
footprint (a closed polygon) and tracks (confirmed; pending only on `--release auto`).

Pure: store records in, `kestrel.cot.event.Event` out (encode with `kestrel.cot.xml`).

Choices, checked against ATAK-CIV's detail handlers:
- `<sensor azimuth fov range …/>` draws a field-of-view cone only when azimuth, fov and range
  are all present (SensorDetailHandler); azimuth is degrees true [0, 360), fov is edge to edge,
  range in metres. We also send vfov, elevation, roll and model. The cone hangs off a marker,
  so the platform is an atom (`a-f-A-M-F-Q`, friendly military fixed-wing UAV).
- The footprint is a `u-d-f` freeform shape: `<link point="lat,lon"/>` vertices, first vertex
  repeated last (closed), as ATAK's own exports do.
- A track's `<link uid=… relation="p-p"/>` names the platform that produced it; a second
  `<link url=… mime=…/>` points at the source video (ATAK's LinkDetailHandler keeps url/mime),
  only when that is a URL other machines can open (`shareable_video_url`): a local file path
  would leak the analyst's disk layout to every client and is useless remotely.
- Machine-only (pending) tracks are `a-u-G` with how `m-a` ("algorithmic tracker"), callsign
  prefix `UNVALIDATED`, and a remarks line saying so; rejected tracks never make an event.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from kestrel.cot.event import UNKNOWN, Event
from kestrel.ped.review import PlatformState, StoredTrack, ground_distance

PLATFORM_TYPE = "a-f-A-M-F-Q"
FOOTPRINT_TYPE = "u-d-f"
UNVALIDATED_TYPE = "a-u-G"
UNVALIDATED_PREFIX = "UNVALIDATED"
AFFILIATION_CODE = {"friend": "f", "hostile": "h", "neutral": "n", "unknown": "u", "suspect": "s"}
# Function part of the type by label (MIL-STD-2525 as CoT): ground vehicle, sea surface, ground.
LABEL_FUNCTION = {"vehicle": "G-E-V", "vessel": "S", "person": "G", "unknown": "G"}


@dataclass(frozen=True, slots=True)
class CotOptions:
    """Identity and timing shared by every event of one run."""

    run_id: str
    callsign: str = "KESTREL-UAV"
    video_url: str | None = None  # link from track events: a stream URL others can open, never a path
    stale_s: float = 600.0
    release_auto: bool = False
    # Who flies: the KLV platform designation (ST 0601 tag 10), else the source. One UAV marker
    # per platform across runs (no ghost UAV left on the map by every run); None: per run.
    platform_id: str | None = None
    image_width: int | None = None  # pixels, for the geolocation error estimate

    @property
    def platform_uid(self) -> str:
        if self.platform_id:
            return f"kestrel-uav-{_slug(self.platform_id)}"
        return f"kestrel-ped-{self.run_id}-uav"

    @property
    def footprint_uid(self) -> str:
        return f"kestrel-ped-{self.run_id}-footprint"

    def track_uid(self, track_id: int) -> str:
        return f"kestrel-ped-{self.run_id}-track-{track_id}"


def _slug(text: str) -> str:
    """A uid-safe form of a platform name or source: [A-Za-z0-9._-], at most 64 characters."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return (out or "unknown")[-64:]


# Geolocation error model (1 sigma). A box centre is ray-cast through the sensor model onto the
# ellipsoid, so the error is the line of sight's: the KLV pointing (platform INS + gimbal angles,
# ~0.25 deg for a tactical system) and the box centre (~2 px) spread across range as
# range * angle, and along the ground by 1 / sin(depression). Terrain height is not modelled
# (ellipsoid), so le is the height error that the along-range error implies on the ray.
POINTING_SIGMA_DEG = 0.25
CENTRE_SIGMA_PX = 2.0


def position_error(p: PlatformState, width: int | None) -> tuple[float, float] | None:
    """(ce, le) in metres for a point geolocated from platform state `p`; None without geometry."""
    rng = sensor_range(p)
    if rng is None or rng <= 0:
        return None
    px = math.radians(p.hfov) / width if p.hfov and width else 0.0
    angle = math.hypot(math.radians(POINTING_SIGMA_DEG), CENTRE_SIGMA_PX * px)
    cross = rng * angle
    sin_dep = min(max((p.alt or 0.0) / rng, 0.05), 1.0) if p.alt else 0.5
    along = cross / sin_dep
    return math.hypot(cross, along), along * sin_dep / math.sqrt(max(1.0 - sin_dep**2, 1e-6))


def _a(v: float, nd: int = 7) -> str:
    """A quoted XML attribute value: the number rounded to `nd` decimals, shortest form."""
    return quoteattr(repr(round(float(v), nd)))


def _ev(uid: str, type_: str, how: str, lat: float, lon: float, now_ms: int, opts: CotOptions,
        detail: str, hae: float = UNKNOWN, ce: float = UNKNOWN, le: float = UNKNOWN) -> Event:
    return Event(uid=uid, type=type_, how=how, time=now_ms, start=now_ms,
                 stale=now_ms + int(opts.stale_s * 1000), lat=lat, lon=lon, hae=hae, ce=ce, le=le,
                 detail=detail.encode(), attrs={"version": "2.0"})


def centroid(poly: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return (sum(p[0] for p in poly) / len(poly), sum(p[1] for p in poly) / len(poly))


def sensor_range(p: PlatformState) -> float | None:
    """How far to draw the cone: slant range, else distance to the footprint's far edge, else
    altitude over the depression angle."""
    if p.slant_range and p.slant_range > 0:
        return p.slant_range
    if p.footprint and p.lat is not None and p.lon is not None:
        here = (p.lat, p.lon)
        far = max(ground_distance(here, c) for c in p.footprint)
        return math.hypot(far, p.alt or 0.0)
    el = p.sensor_el if p.sensor_el is not None else None
    if p.alt and el is not None and el < -1.0:
        return p.alt / math.sin(math.radians(-el))
    return None


SHAREABLE_SCHEMES = ("udp", "rtsp", "http", "https", "srt")
_LOCAL_HOSTS = ("", "localhost", "0.0.0.0", "::")


def shareable_video_url(url: str | None) -> str | None:
    """`url` if a TAK client elsewhere could open it (udp/rtsp/http(s)/srt with a host that is not
    loopback or a wildcard), else None. Files and `file://` URLs are never shared."""
    if not url:
        return None
    u = urlsplit(url)
    try:
        host = u.hostname or ""
    except ValueError:
        return None
    if u.scheme.lower() not in SHAREABLE_SCHEMES or host.lower() in _LOCAL_HOSTS:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: fine
        pass
    return url


def _shared_stream(url: str) -> bool:
    """A live source other clients can also receive: a multicast udp:// group (a unicast or
    loopback address is only where this machine listens, useless to anyone else)."""
    u = urlsplit(url)
    try:
        return u.scheme == "udp" and ipaddress.ip_address(u.hostname or "").is_multicast
    except ValueError:
        return False


def platform_event(p: PlatformState, opts: CotOptions, now_ms: int) -> Event | None:
    """The UAV with its sensor cone; None when the platform position is unknown."""
    if p.lat is None or p.lon is None:
        return None
    parts = [f"<contact callsign={quoteattr(opts.callsign)}/>"]
    az, rng = p.look_azimuth, sensor_range(p)
    if az is not None and p.hfov is not None and rng is not None:
        attrs = {"azimuth": az, "fov": p.hfov, "range": rng}
        if p.vfov is not None:
            attrs["vfov"] = p.vfov
        attrs["elevation"] = p.sensor_el if p.sensor_el is not None else 0.0
        attrs["roll"] = p.sensor_roll if p.sensor_roll is not None else 0.0
        a = " ".join(f"{k}={_a(v, 2)}" for k, v in attrs.items())
        # Never write hideFov (ATAK hides the cone when the attribute is present at all, any value).
        parts.append(f'<sensor {a} model="Kestrel PED EO/IR"/>')
    if p.heading is not None:  # speed from the KLV position track when known (ATAK orients the icon)
        speed = f" speed={_a(p.speed, 1)}" if p.speed is not None else ""
        parts.append(f"<track course={_a(p.heading, 1)}{speed}/>")
    if opts.video_url and _shared_stream(opts.video_url):  # ATAK's VideoDetailHandler: a video alias
        parts.append(f"<__video url={quoteattr(opts.video_url)}/>")
    parts.append(f"<remarks>{escape('Kestrel PED sensor platform (position from KLV).')}</remarks>")
    parts.append('<precisionlocation altsrc="GPS" geopointsrc="GPS"/>')
    # KLV carries MSL altitude; CoT wants HAE. The geoid offset (< 110 m) is not applied here.
    return _ev(opts.platform_uid, PLATFORM_TYPE, "m-g", p.lat, p.lon, now_ms, opts, "".join(parts),
               hae=p.alt if p.alt is not None else UNKNOWN)


def footprint_event(p: PlatformState, opts: CotOptions, now_ms: int) -> Event | None:
    """The image footprint as a closed freeform polygon; None without corners."""
    if not p.footprint or len(p.footprint) < 3:
        return None
    ring = [*p.footprint, p.footprint[0]]
    links = "".join(f"<link point={quoteattr(f'{lat:.7f},{lon:.7f}')}/>" for lat, lon in ring)
    clat, clon = centroid(p.footprint)
    detail = (f"{links}<strokeColor value=\"-16711681\"/><strokeWeight value=\"3.0\"/>"
              f"<fillColor value=\"1291911167\"/><contact callsign={quoteattr(opts.callsign + ' footprint')}/>"
              f"<remarks>{escape('Image footprint (UL, UR, LR, LL) of the last processed frame.')}</remarks>"
              '<labels_on value="false"/>')
    return _ev(opts.footprint_uid, FOOTPRINT_TYPE, "m-i", clat, clon, now_ms, opts, detail)


def track_type(t: StoredTrack) -> str:
    return f"a-{AFFILIATION_CODE.get(t.affiliation, 'u')}-{LABEL_FUNCTION.get(t.label, 'G')}"


def track_event(t: StoredTrack, opts: CotOptions, now_ms: int, platform: PlatformState | None = None) -> Event | None:
    """A confirmed track as the analyst labelled it; a pending one (only with release_auto) as an
    unvalidated machine track; None for rejected, pending without release_auto, or no ground fix.
    time/start: the video time (KLV UTC) of the track's last point, stale that plus `stale_s`
    (now when the video has no UTC); ce/le: `position_error` for `platform`'s geometry."""
    if t.lat is None or t.lon is None or t.state == "rejected":
        return None
    if t.state == "confirmed":
        type_, how = track_type(t), "m-i"
        callsign = f"T{t.id} {t.label}"
        remarks = (f"Kestrel PED track {t.id}: {t.label}, {t.affiliation}; confirmed by "
                   f"{t.analyst or 'unknown'} at {t.reviewed_at or '?'}; seen {t.frames or len(t.points)} frames.")
    elif t.state == "pending" and opts.release_auto:
        type_, how = UNVALIDATED_TYPE, "m-a"
        callsign = f"{UNVALIDATED_PREFIX} T{t.id}"
        remarks = (f"MACHINE-GENERATED, UNVALIDATED: Kestrel PED track {t.id} has not been reviewed by an "
                   f"analyst. Seen {t.frames or len(t.points)} frames.")
    else:
        return None
    parts = [f"<contact callsign={quoteattr(callsign)}/>"]
    if t.speed is not None and t.heading is not None and math.isfinite(t.speed) and math.isfinite(t.heading):
        parts.append(f"<track speed={_a(t.speed, 2)} course={_a(t.heading % 360.0, 1)}/>")
    parts.append(f"<link uid={quoteattr(opts.platform_uid)} type={quoteattr(PLATFORM_TYPE)} "
                 f"parent_callsign={quoteattr(opts.callsign)} relation=\"p-p\"/>")
    if opts.video_url:
        parts.append(f"<link url={quoteattr(opts.video_url)} mime=\"video/mp2t\" relation=\"r-u\" "
                     f"remarks=\"source video\"/>")
    parts.append(f"<remarks>{escape(remarks)}</remarks>")
    parts.append('<precisionlocation altsrc="???" geopointsrc="CALC"/>')
    parts.append('<archive/>' if t.state == "confirmed" else "")
    seen_ms = int(round(t.last_utc * 1000)) if t.last_utc is not None else now_ms
    err = position_error(platform, opts.image_width) if platform is not None else None
    return _ev(opts.track_uid(t.id), type_, how, t.lat, t.lon, seen_ms, opts, "".join(parts),
               ce=err[0] if err else UNKNOWN, le=err[1] if err else UNKNOWN)


DELETE_TYPE = "t-x-d-d"


def delete_event(target_uid: str, target_type: str, opts: CotOptions, now_ms: int) -> Event:
    """Retract an item from TAK maps (ATAK's delete: `t-x-d-d` linking the target, with
    `<__forcedelete/>`); our server also drops it from what late joiners get."""
    detail = (f"<link uid={quoteattr(target_uid)} type={quoteattr(target_type)} relation=\"p-p\"/>"
              "<__forcedelete/>")
    return Event(uid=f"{target_uid}-delete", type=DELETE_TYPE, how="h-e", time=now_ms, start=now_ms,
                 stale=now_ms + 60_000, lat=0.0, lon=0.0, detail=detail.encode(), attrs={"version": "2.0"})


def run_events(platform: PlatformState | None, tracks: Sequence[StoredTrack], opts: CotOptions,
               now_ms: int) -> list[Event]:
    """Everything one dissemination sends, platform first (tracks link to it)."""
    out: list[Event] = []
    if platform is not None:
        for ev in (platform_event(platform, opts, now_ms), footprint_event(platform, opts, now_ms)):
            if ev is not None:
                out.append(ev)
    for t in tracks:
        ev = track_event(t, opts, now_ms, platform)
        if ev is not None:
            out.append(ev)
    return out
