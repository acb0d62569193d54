"""Sensor-model speed: `python bench/geo.py` prints medians and the ratio to a bare pyproj
ECEF->geodetic transform of the same N points (the floor: every ground point needs one)."""

from __future__ import annotations

import time

import numpy as np

from kestrel.geo import ecef_to_geodetic, from_metadata, geodetic_to_ecef
from kestrel.klv.metadata import SensorMetadata


def median_us(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main() -> None:
    md = SensorMetadata(sensor_lat=35.0, sensor_lon=-117.0, sensor_alt=2500.0, platform_heading=30.0,
                        platform_pitch=1.0, platform_roll=-3.0, sensor_rel_az=20.0, sensor_rel_el=-50.0,
                        sensor_rel_roll=2.0, hfov=12.0, vfov=9.0)
    model = from_metadata(md, 1280, 720)
    assert model is not None
    rng = np.random.default_rng(0)
    print(f"{'operation':<34}{'N':>8}{'median us':>12}{'us/point':>10}{'x pyproj floor':>16}")
    print(f"{'from_metadata':<34}{1:>8}{median_us(lambda: from_metadata(md, 1280, 720), 300):>12.1f}")
    print(f"{'footprint':<34}{4:>8}{median_us(model.footprint, 100):>12.1f}")
    print(f"{'gsd':<34}{1:>8}{median_us(lambda: model.gsd(640, 360), 300):>12.1f}")
    for n in (1, 100, 10_000, 100_000):
        uv = np.column_stack([rng.uniform(0, 1280, n), rng.uniform(0, 720, n)])
        ground = model.pixels_to_ground(uv)
        xyz = geodetic_to_ecef(ground[:, 0], ground[:, 1], ground[:, 2])
        rep = 200 if n <= 100 else 20 if n <= 10_000 else 5
        floor = median_us(lambda xyz=xyz: ecef_to_geodetic(xyz), rep)
        for name, fn in (("pixels_to_ground", lambda uv=uv: model.pixels_to_ground(uv)),
                         ("grounds_to_pixels", lambda ground=ground: model.grounds_to_pixels(ground))):
            t = median_us(fn, rep)
            print(f"{name:<34}{n:>8}{t:>12.1f}{t / n:>10.3f}{t / floor:>16.1f}")


if __name__ == "__main__":
    main()
