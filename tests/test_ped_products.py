"""PED products and CoT builders, checked against outside references: MITRE's CoT XSD, ATAK's own
freeform-shape export, takproto's XML parser, and lxml for KML/XML well-formedness."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from kestrel.cot.xml import encode_event
from kestrel.ped import cot
from kestrel.ped.products import tracks_geojson, tracks_kml, write_detections_csv
from kestrel.ped.records import Detections
from kestrel.ped.review import PlatformState, StoredPoint, StoredTrack

FOOT = [(38.84, -77.07), (38.84, -77.06), (38.83, -77.06), (38.83, -77.07)]
PLATFORM = PlatformState(10, 1.0, lat=38.80, lon=-77.065, alt=1500.0, heading=350.0, sensor_az=20.0,
                         sensor_el=-30.0, hfov=12.0, vfov=8.0, footprint=FOOT)
OPTS = cot.CotOptions(run_id="r1", video_url="rtsp://10.1.1.5:8554/uav1")


def track(tid: int, state: str = "pending", n: int = 4, geo: bool = True, **kw: object) -> StoredTrack:
    pts = [StoredPoint(f, f * 0.1, 10.0 + f, 20.0, 8.0, 6.0, 38.835 + f * 1e-5 if geo else None,
                       -77.065 if geo else None) for f in range(n)]
    last = pts[-1]
    return StoredTrack(id=tid, points=pts, frames=n, first_seen=0.0, last_seen=last.t, speed=4.0, heading=10.0,
                       lat=last.lat, lon=last.lon, state=state, **kw)  # type: ignore[arg-type]


def test_geojson_lines_points_and_null_geometry() -> None:
    fc = tracks_geojson([track(1, "confirmed", label="vehicle"), track(2, geo=False), track(3, n=1)])
    feats = {f["id"]: f for f in fc["features"]}
    assert set(feats) == {"track-1-path", "track-1", "track-2", "track-3"}
    line = feats["track-1-path"]["geometry"]
    assert line["type"] == "LineString" and len(line["coordinates"]) == 4
    assert line["coordinates"][0] == [-77.065, 38.835]  # RFC 7946: lon, lat
    assert feats["track-1"]["geometry"]["type"] == "Point"
    assert feats["track-2"]["geometry"] is None and feats["track-2"]["properties"]["geolocated"] is False
    props = feats["track-1"]["properties"]
    for key in ("id", "label", "review", "speed_mps", "heading_deg", "first_seen", "last_seen"):
        assert key in props
    assert props["review"] == "confirmed" and props["label"] == "vehicle"
    json.dumps(fc, allow_nan=False)  # strict JSON: no NaN leaks


def test_kml_is_well_formed_and_lists_geolocated_tracks() -> None:
    text = tracks_kml([track(1, "confirmed"), track(2, geo=False), track(3, label="un<safe>&")], [PLATFORM])
    root = etree.fromstring(text.encode())
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    names = root.xpath("//k:Placemark/k:name/text()", namespaces=ns)
    assert "Track 1 (unknown, confirmed)" in names and "Track 3 (un<safe>&, pending)" in names
    assert not any("Track 2" in n for n in names)
    ring = root.xpath("//k:Polygon//k:coordinates/text()", namespaces=ns)[0].split()
    assert ring[0] == ring[-1] and len(ring) == 5


def test_detections_csv(tmp_path: Path) -> None:
    d0 = Detections(xyxy=[[1, 2, 3, 4], [5, 6, 7, 8]], confidence=[0.5, 0.25], class_id=[0, 1],
                    ground=[[38.0, -77.0, 1.0], [np.nan, np.nan, np.nan]], frame_index=0, pts=0.0)
    d1 = Detections.empty(1, 0.033)
    n = write_detections_csv(tmp_path / "d.csv", [d0, d1])
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    assert n == 2 and len(rows) == 2
    assert rows[0]["lat"] == "38.0" and rows[1]["lat"] == "" and rows[1]["class_id"] == "1"


@pytest.fixture(scope="module")
def xsd(ref_data: Path) -> etree.XMLSchema:
    """MITRE's CoT 2.0 base schema (an outside reference)."""
    return etree.XMLSchema(etree.parse(str(ref_data / "cot/schema/cot-base-event.xsd")))


def events(release: bool = False) -> list[bytes]:
    opts = cot.CotOptions(run_id="r1", video_url=OPTS.video_url, release_auto=release)
    tracks = [track(1, "confirmed", label="vehicle", affiliation="hostile", analyst="al"), track(2, "pending"),
              track(3, "rejected"), track(4, "confirmed", geo=False)]
    return [encode_event(e) for e in cot.run_events(PLATFORM, tracks, opts, 1_700_000_000_000)]


def test_events_validate_against_mitre_xsd(xsd: etree.XMLSchema) -> None:
    for data in [*events(release=True), encode_event(cot.delete_event("x", "a-h-G", OPTS, 1))]:
        doc = etree.fromstring(data)
        assert xsd.validate(doc), (data, xsd.error_log)


def test_what_is_sent_by_review_state() -> None:
    types = [etree.fromstring(d).get("type") for d in events()]
    assert types == ["a-f-A-M-F-Q", "u-d-f", "a-h-G-E-V"]  # pending, rejected, unlocated: not sent
    auto = [etree.fromstring(d) for d in events(release=True)]
    assert [e.get("type") for e in auto] == ["a-f-A-M-F-Q", "u-d-f", "a-h-G-E-V", "a-u-G"]
    pend = auto[-1]
    assert pend.find("detail/contact").get("callsign").startswith("UNVALIDATED")
    assert "MACHINE-GENERATED, UNVALIDATED" in pend.find("detail/remarks").text
    assert pend.get("how") == "m-a"


def test_platform_sensor_detail_has_what_atak_needs() -> None:
    ev = etree.fromstring(events()[0])
    s = ev.find("detail/sensor")
    # ATAK's SensorDetailHandler draws the cone only with azimuth, fov and range all present.
    assert float(s.get("azimuth")) == pytest.approx(10.0)  # heading 350 + relative 20
    assert float(s.get("fov")) == 12.0 and float(s.get("vfov")) == 8.0
    assert 1500.0 < float(s.get("range")) < 10000.0
    assert s.get("hideFov") is None  # ATAK hides the cone if this attribute exists at all
    assert float(ev.find("point").get("lat")) == pytest.approx(38.80)


def test_footprint_matches_atak_freeform_shape(ref_data: Path) -> None:
    atak = etree.parse(str(ref_data / "cot/atak-examples/Drawing_Shapes_-_Free_Form.cot")).getroot()
    ours = etree.fromstring(events()[1])
    assert ours.get("type") == atak.get("type") == "u-d-f"
    pts = [lk.get("point") for lk in ours.findall("detail/link")]
    ref = [lk.get("point") for lk in atak.findall("detail/link")]
    assert ref[0] == ref[-1] and pts[0] == pts[-1] and len(pts) == 5  # closed, like ATAK's export
    for p in pts:
        lat, lon = map(float, p.split(","))
        assert (lat, lon) in [(round(a, 7), round(b, 7)) for a, b in FOOT]
    assert {c.tag for c in ours.find("detail")} <= {c.tag for c in atak.find("detail")}


def test_confirmed_track_detail() -> None:
    ev = etree.fromstring(events()[2])
    d = ev.find("detail")
    assert d.find("contact").get("callsign") == "T1 vehicle"
    assert float(d.find("track").get("speed")) == 4.0 and float(d.find("track").get("course")) == 10.0
    links = d.findall("link")
    assert links[0].get("uid") == OPTS.platform_uid and links[0].get("relation") == "p-p"
    assert links[1].get("url") == "rtsp://10.1.1.5:8554/uav1"
    assert "confirmed by al" in d.find("remarks").text


def test_takproto_reads_our_events() -> None:
    import takproto
    for data in events(release=True):
        msg = takproto.parse_proto(takproto.xml2proto(data))
        assert msg.cotEvent.type == etree.fromstring(data).get("type")


def test_video_alias_only_for_streams_others_can_join() -> None:
    def video(url: str) -> object:
        ev = cot.platform_event(PLATFORM, cot.CotOptions(run_id="r", video_url=url), 0)
        assert ev is not None
        return etree.fromstring(encode_event(ev)).find("detail/__video")

    assert video("udp://239.1.2.3:5000").get("url") == "udp://239.1.2.3:5000"  # type: ignore[attr-defined]
    assert video("udp://127.0.0.1:5000") is None and video("file:///x.ts") is None
