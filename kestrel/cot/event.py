"""The CoT `Event` record: the one small typed record every TEN stage passes along.

The detail is kept as the original XML bytes (the inside of `<detail>…</detail>`) so the server
relays it verbatim; codecs (XML, TAK protobuf) convert to and from this record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

UNKNOWN = 9999999.0  # CoT's "no value" for hae/ce/le
RANGES = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0)}  # degrees, WGS 84; hae/ce/le: any finite number


def check_point(lat: float, lon: float, hae: float, ce: float, le: float) -> str | None:
    """Why a point cannot be relayed (out of range, NaN, infinite), or None. Both codecs call this at
    their edge, so nothing past `kestrel.cot` ever sees a point that is not on the Earth."""
    for name, v in (("lat", lat), ("lon", lon), ("hae", hae), ("ce", ce), ("le", le)):
        if not math.isfinite(v):
            return f"{name}={v!r} is not finite"
        lo_hi = RANGES.get(name)
        if lo_hi is not None and not lo_hi[0] <= v <= lo_hi[1]:
            return f"{name}={v!r} is outside [{lo_hi[0]:g}, {lo_hi[1]:g}]"
    return None


@dataclass(slots=True)
class Event:
    uid: str
    type: str
    time: int  # milliseconds since the Unix epoch, UTC
    start: int
    stale: int
    how: str = "m-g"
    lat: float = 0.0
    lon: float = 0.0
    hae: float = UNKNOWN
    ce: float = UNKNOWN
    le: float = UNKNOWN
    detail: bytes = b""  # inner XML of <detail>, verbatim (may be empty)
    # Other <event> attributes (version, access, qos, opex, ...) kept in order, verbatim.
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def is_sa(self) -> bool:
        """Situational-awareness position report (atoms a-*), the usual `a-f-G-U-C` etc."""
        return self.type.startswith("a-")
