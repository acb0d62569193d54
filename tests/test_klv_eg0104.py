"""EG 0104 on the real aphill sample: every packet decodes, the sensor metadata is coherent."""

from __future__ import annotations

import math
from pathlib import Path

from kestrel.klv import KlvDecoder, to_metadata

from .test_klv_gold import klv_payloads


def test_aphill_every_packet_decodes_to_metadata(ref_data: Path) -> None:
    streams = klv_payloads(ref_data / "fmv" / "aphill_klv_10s.ts")
    [bufs] = streams.values()
    dec = KlvDecoder()
    pkts = [p for b in bufs for p in dec.feed(b)] + dec.flush()
    assert len(pkts) == len(bufs) >= 10
    assert dec.stats.errors == 0 and dec.stats.packets["EG0104"] == len(pkts)
    times = []
    for p in pkts:
        md = to_metadata(p)
        assert md is not None and md.corners is not None and len(md.corners) == 4
        assert md.time_us is not None
        times.append(md.time_us)
        # the frame centre lies inside the corner box, near Fort A.P. Hill (Virginia)
        lats = [c[0] for c in md.corners]
        lons = [c[1] for c in md.corners]
        assert min(lats) <= md.frame_center_lat <= max(lats)  # type: ignore[operator]
        assert min(lons) <= md.frame_center_lon <= max(lons)  # type: ignore[operator]
        assert 37.5 < md.sensor_lat < 38.5 and -78 < md.sensor_lon < -77  # type: ignore[operator]
        # geometry check independent of our decoder: depression from altitude/slant range
        # (flat earth, ground near sea level) agrees with the carried obliquity within a few degrees
        assert md.sensor_alt and md.slant_range and md.sensor_abs_el is not None
        depression = math.degrees(math.asin(min(1.0, md.sensor_alt / md.slant_range)))
        assert abs(depression + md.sensor_abs_el) < 5.0
    assert times == sorted(times)
