"""SensorModel.from_metadata: model choice, corner fallbacks, MISB worked example, frame-centre check."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kestrel.geo import (
    PinholeModel,
    PlaneModel,
    build_model,
    destination,
    distance_bearing,
    explain,
    from_metadata,
    geodetic_to_ecef,
    summarize_frame_center,
)
from kestrel.geo.check import frame_center_offset
from kestrel.klv.metadata import SensorMetadata


def full_md(**kw: float | None) -> SensorMetadata:
    base: dict = dict(
        sensor_lat=35.0,
        sensor_lon=-117.0,
        sensor_alt=2500.0,
        platform_heading=30.0,
        platform_pitch=1.0,
        platform_roll=-3.0,
        sensor_rel_az=20.0,
        sensor_rel_el=-50.0,
        sensor_rel_roll=2.0,
        hfov=12.0,
        vfov=9.0,
    )
    base.update(kw)
    return SensorMetadata(**base)


def test_pose_model_from_angles() -> None:
    m = from_metadata(full_md(), 640, 480)
    assert isinstance(m, PinholeModel) and m.kind == "pose" and m.assumed == ()
    assert explain(full_md()) is None


def test_missing_optional_angles_are_assumed_zero_and_listed() -> None:
    md = full_md()
    md.platform_pitch = md.platform_roll = md.sensor_rel_roll = md.vfov = None
    m = from_metadata(md, 640, 480)
    assert m is not None and m.kind == "pose"
    assert set(m.assumed) == {"platform_pitch", "platform_roll", "sensor_rel_roll", "vfov"}
    assert isinstance(m, PinholeModel)
    assert m.vfov == pytest.approx(2 * math.degrees(math.atan(math.tan(math.radians(6.0)) * 480 / 640)))


@pytest.mark.parametrize(
    ("md", "words"),
    [
        (SensorMetadata(), "no sensor position"),
        (SensorMetadata(frame_center_lat=1.0, frame_center_lon=2.0), "only the frame centre"),
        (full_md(hfov=0.0), "horizontal FOV"),
        (full_md(sensor_rel_el=None), "azimuth+elevation"),
        (full_md(sensor_alt=float("nan")), "no sensor position"),
    ],
)
def test_insufficient_metadata_gives_none_and_a_reason(md: SensorMetadata, words: str) -> None:
    assert from_metadata(md, 640, 480) is None
    reason = explain(md)
    assert reason is not None and words in reason
    with pytest.raises(ValueError, match=re.escape(words)):
        build_model(md, 640, 480)


def _corner_md(truth: PinholeModel, *, position: bool, fov: bool) -> SensorMetadata:
    corners = tuple(truth.footprint(0.0))
    lat, lon, hae = truth.sensor_llh
    return SensorMetadata(
        sensor_lat=lat if position else None,
        sensor_lon=lon if position else None,
        sensor_alt=hae if position else None,
        hfov=truth.hfov if fov else None,
        vfov=truth.vfov if fov else None,
        corners=corners,
    )


truth_poses = st.fixed_dictionaries(
    {
        "lat": st.floats(-60.0, 60.0),
        "lon": st.floats(-179.0, 179.0),
        "hae": st.floats(300.0, 8000.0),
        "heading": st.floats(0.0, 360.0),
        "pitch": st.floats(-5.0, 5.0),
        "roll": st.floats(-10.0, 10.0),
        "az": st.floats(0.0, 360.0),
        "el": st.floats(-90.0, -30.0),
        "sensor_roll": st.floats(-10.0, 10.0),
        "hfov": st.floats(2.0, 50.0),
        "vfov": st.floats(2.0, 40.0),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(truth_poses, st.booleans())
def test_corner_pose_fallback_reproduces_the_camera(pose: dict, fov: bool) -> None:
    truth = PinholeModel.from_angles(**pose, width=640, height=480)
    m = from_metadata(_corner_md(truth, position=True, fov=fov), 640, 480)
    assert isinstance(m, PinholeModel) and m.kind == "corners-pose"
    for (la1, lo1), (la2, lo2) in zip(m.footprint(0.0), truth.footprint(0.0), strict=True):
        assert distance_bearing(la1, lo1, la2, lo2)[0] < 1e-3
    uv = np.array([[320.0, 240.0], [100.0, 50.0], [600.0, 400.0]])
    a, b = m.pixels_to_ground(uv, 0.0), truth.pixels_to_ground(uv, 0.0)
    assert np.linalg.norm(geodetic_to_ecef(*a.T) - geodetic_to_ecef(*b.T), axis=1).max() < 1e-3
    assert m.hfov == pytest.approx(truth.hfov, rel=1e-6)


def test_corner_plane_fallback() -> None:
    truth = PinholeModel.from_angles(
        lat=50.0,
        lon=5.0,
        hae=1500.0,
        heading=70.0,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-60.0,
        sensor_roll=0.0,
        hfov=30.0,
        vfov=20.0,
        width=720,
        height=480,
    )
    md = _corner_md(truth, position=False, fov=False)
    m = from_metadata(md, 720, 480)
    assert isinstance(m, PlaneModel) and m.kind == "corners-plane"
    for (la1, lo1), (la2, lo2) in zip(m.footprint(), truth.footprint(0.0), strict=True):
        assert distance_bearing(la1, lo1, la2, lo2)[0] < 1e-3
    # A pinhole over (nearly) flat ground is a homography: interior points agree to centimetres.
    uv = np.column_stack(
        [np.random.default_rng(1).uniform(0, 720, 50), np.random.default_rng(2).uniform(0, 480, 50)]
    )
    a, b = m.pixels_to_ground(uv), truth.pixels_to_ground(uv, 0.0)
    assert np.linalg.norm(geodetic_to_ecef(*a.T) - geodetic_to_ecef(*b.T), axis=1).max() < 0.1
    # Exact inverses.
    back = m.grounds_to_pixels(a)
    assert np.abs(back - uv).max() < 1e-5
    again = m.pixels_to_ground(back)
    assert np.linalg.norm(geodetic_to_ecef(*again.T) - geodetic_to_ecef(*a.T), axis=1).max() < 1e-3
    assert m.gsd(360.0, 240.0) == pytest.approx(truth.gsd(360.0, 240.0, 0.0), rel=1e-3)


def test_plane_model_horizon_and_degenerate_corners() -> None:
    truth = PinholeModel.from_angles(
        lat=0.0,
        lon=0.0,
        hae=1000.0,
        heading=0.0,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-20.0,
        sensor_roll=0.0,
        hfov=20.0,
        vfov=20.0,
        width=100,
        height=100,
    )
    m = PlaneModel(truth.footprint(0.0), 100, 100)
    # The ground's vanishing line sits 20 deg above the centre: v = 50 - 50*tan(20)/tan(10) < 0.
    assert m.pixel_to_ground(50.0, -150.0) is None
    assert m.pixel_to_ground(50.0, -50.0) is not None
    bad = SensorMetadata(corners=((1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)))
    assert from_metadata(bad, 100, 100) is None
    assert "degenerate" in (explain(bad) or "")


def _example_values(ref_data: Path) -> dict[int, float]:
    text = (ref_data / "fmv" / "st0601_example_packet.md").read_text()
    values: dict[int, float] = {}
    for tag, value in re.findall(r"^\|\s*(\d+)\s*\|\s*(-?\d+\.\d+)\s*\|", text, flags=re.M):
        values[int(tag)] = float(value)
    return values


def test_st0601_worked_example(ref_data: Path) -> None:
    """MISB's worked example: the values are illustrative, not one consistent geometry.

    The frame-centre tag (23/24) lies ~11,500 km from the sensor (13/14), so it cannot be the
    ray-traced centre of any camera there. What does hold: the camera (pointing backwards,
    el -168.8 deg = 11.2 deg below the horizon over the tail) sees the ground about where the
    slant range tag (21) says.
    """
    t = _example_values(ref_data)
    md = SensorMetadata(
        platform_heading=t[5],
        platform_pitch=t[6],
        platform_roll=t[7],
        sensor_lat=t[13],
        sensor_lon=t[14],
        sensor_alt=t[15],
        hfov=t[16],
        vfov=t[17],
        sensor_rel_az=t[18],
        sensor_rel_el=t[19],
        sensor_rel_roll=t[20],
        slant_range=t[21],
        frame_center_lat=t[23],
        frame_center_lon=t[24],
        frame_center_elev=t[25],
    )
    m = from_metadata(md, 1280, 720)
    assert isinstance(m, PinholeModel) and m.kind == "pose"
    centre = m.image_center_ground(t[25])
    assert centre is not None
    to_tag = frame_center_offset(md)
    assert isinstance(to_tag, float)
    assert m.sensor_ecef is not None
    slant = float(np.linalg.norm(geodetic_to_ecef(*centre) - m.sensor_ecef))
    ground, bearing = distance_bearing(t[13], t[14], centre[0], centre[1])
    print(
        f"\nST0601 example: image centre {centre[0]:.5f},{centre[1]:.5f}; {to_tag / 1000:.0f} km from the "
        f"frame-centre tag; slant {slant:.0f} m vs tag 21 {t[21]:.0f} m; ground range {ground:.0f} m "
        f"bearing {bearing:.1f}"
    )
    assert to_tag > 5e6  # the tag is on another continent: an illustrative value, not geometry
    assert slant == pytest.approx(t[21], rel=0.15)
    # Looking back over the tail: heading + azimuth + 180 (el past -90), within the small
    # pitch/roll tilt.
    expected = (t[5] + t[18] - 180.0) % 360.0
    assert abs((bearing - expected + 180) % 360 - 180) < 3.0


def test_summarize_frame_center_known_offsets() -> None:
    offsets = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 1000.0]
    mds = []
    for i, off in enumerate(offsets):
        md = full_md(platform_heading=10.0 * i)
        m = from_metadata(md, 640, 480)
        assert m is not None
        c = m.image_center_ground(120.0)
        assert c is not None
        lat, lon = destination(c[0], c[1], 37.0 * i, off)
        md.frame_center_lat, md.frame_center_lon, md.frame_center_elev = float(lat), float(lon), 120.0
        mds.append(md)
    mds.append(SensorMetadata(frame_center_lat=1.0, frame_center_lon=1.0))  # no model
    mds.append(full_md())  # no frame-centre tag
    s = summarize_frame_center(mds)
    assert s.records == 12 and s.compared == 10
    assert s.median_m == pytest.approx(45.0, abs=1e-3)
    assert s.p90_m == pytest.approx(np.percentile(offsets, 90), abs=1e-3)
    assert s.max_m == pytest.approx(1000.0, abs=1e-3)
    assert s.skipped == {"no sensor model": 1, "no frame-centre tag": 1}
    empty = summarize_frame_center([])
    assert empty.compared == 0 and empty.median_m is None


def test_absolute_pointing_ignores_platform_attitude() -> None:
    """EG 0104 style: angle to north + obliquity are earth-referenced; pitch/roll must not tilt them."""
    md = full_md(platform_pitch=15.0, platform_roll=-25.0, sensor_rel_roll=None)
    md.sensor_abs_az, md.sensor_abs_el = 90.0, -45.0
    m = from_metadata(md, 640, 480)
    assert isinstance(m, PinholeModel) and m.kind == "pose-absolute"
    assert m.assumed == ("sensor_rel_roll",)
    c = m.image_center_ground(0.0)
    assert c is not None
    d, b = distance_bearing(35.0, -117.0, c[0], c[1])
    assert b == pytest.approx(90.0, abs=1e-6) and d == pytest.approx(2500.0, rel=1e-3)
    # Image top is level: the two top corners are equally far from the sensor.
    ul, ur = m.footprint(0.0)[:2]
    assert distance_bearing(35.0, -117.0, *ul)[0] == pytest.approx(
        distance_bearing(35.0, -117.0, *ur)[0], rel=1e-6
    )


def test_real_eg0104_sample_frame_centre(ref_data: Path) -> None:
    """aphill_klv_10s.ts (real EG 0104): how far our image centre lies from the encoder's tag.

    Raw figure (printed): ~72 m, a constant 1.456 deg azimuth offset. That offset is exactly the
    UTM zone 18 grid convergence at the sensor: the encoder computed its frame centre as if
    "Angle to North" were measured from grid north. Adding the convergence (pyproj, an outside
    computation) must bring our ray-traced centre onto the encoder's to about a metre — which
    checks our elevation sign, pinhole and ellipsoid intersection against a real encoder.
    """
    import dataclasses

    from pyproj import Proj

    from kestrel.fmv.ingest import scan_klv
    from kestrel.klv.metadata import to_metadata

    scan = scan_klv(ref_data / "fmv" / "aphill_klv_10s.ts")
    mds = [md for md in (to_metadata(p) for p in scan.packets) if md is not None]
    raw = summarize_frame_center(mds)
    print(f"\naphill frame centre vs ray-traced image centre: {raw.as_dict()}")
    assert raw.compared == len(mds) > 100
    assert raw.median_m is not None and raw.median_m < 300.0
    utm18 = Proj("EPSG:32618")
    grid = [
        dataclasses.replace(
            md,
            sensor_abs_az=(md.sensor_abs_az or 0.0)
            + utm18.get_factors(md.sensor_lon, md.sensor_lat).meridian_convergence,
        )
        for md in mds
    ]
    fixed = summarize_frame_center(grid)
    print(f"with the UTM-18 grid convergence added to Angle to North: {fixed.as_dict()}")
    assert fixed.compared == raw.compared
    assert fixed.max_m is not None and fixed.max_m < 3.0


def test_decoded_example_packet_feeds_the_model(ref_data: Path) -> None:
    """The KLV layer's to_metadata on the real packet bytes gives the same geometry as the table."""
    from kestrel.klv.decoder import decode
    from kestrel.klv.metadata import to_metadata

    text = (ref_data / "fmv" / "st0601_example_packet.md").read_text()
    hexdump = "".join(re.findall(r"^[0-9A-F]{20,}$", text, flags=re.M))
    packets = decode(bytes.fromhex(hexdump))
    md = to_metadata(packets[0])
    assert md is not None
    t = _example_values(ref_data)
    m = from_metadata(md, 1280, 720)
    assert isinstance(m, PinholeModel) and m.kind == "pose" and m.assumed == ()
    ref = from_metadata(
        SensorMetadata(
            platform_heading=t[5],
            platform_pitch=t[6],
            platform_roll=t[7],
            sensor_lat=t[13],
            sensor_lon=t[14],
            sensor_alt=t[15],
            hfov=t[16],
            vfov=t[17],
            sensor_rel_az=t[18],
            sensor_rel_el=t[19],
            sensor_rel_roll=t[20],
        ),
        1280,
        720,
    )
    assert ref is not None
    a, b = m.image_center_ground(0.0), ref.image_center_ground(0.0)
    assert a is not None and b is not None
    assert distance_bearing(a[0], a[1], b[0], b[1])[0] < 0.01  # the same tags: measured 0.0 m at 61 km


def test_plane_model_across_the_antimeridian() -> None:
    truth = PinholeModel.from_angles(
        lat=-16.0,
        lon=179.999,
        hae=2000.0,
        heading=0.0,
        pitch=0.0,
        roll=0.0,
        az=0.0,
        el=-90.0,
        sensor_roll=0.0,
        hfov=40.0,
        vfov=30.0,
        width=400,
        height=300,
    )
    corners = truth.footprint(0.0)
    assert corners[0][1] > 179.0 and corners[1][1] < -179.0  # the frame straddles +-180
    m = PlaneModel(corners, 400, 300)
    c = m.image_center_ground()
    t = truth.image_center_ground(0.0)
    assert c is not None and t is not None
    assert distance_bearing(c[0], c[1], t[0], t[1])[0] < 0.05
    for (la1, lo1), (la2, lo2) in zip(m.footprint(), corners, strict=True):
        assert distance_bearing(la1, lo1, la2, lo2)[0] < 1e-3
