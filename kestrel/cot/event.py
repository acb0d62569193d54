"""The CoT `Event` record: the one small typed record every TEN stage passes along.

The detail is kept as the original XML bytes (the inside of `<detail>…</detail>`) so the server
relays it verbatim; codecs (XML, TAK protobuf) convert to and from this record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNKNOWN = 9999999.0  # CoT's "no value" for hae/ce/le


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
