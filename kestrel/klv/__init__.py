"""kestrel.klv: sans-I/O MISB KLV decode and encode (ST 0601, ST 0102, ST 0903, EG 0104).

    from kestrel.klv import decode, KlvDecoder, st0601, st0903, to_metadata, to_jsonable
    pkts = decode(payload_bytes)              # -> list[KlvPacket], never raises on bad bytes
    md = to_metadata(pkts[0])                 # -> SensorMetadata | None
    raw = st0601.encode({13: 38.0, 14: -77.0}, timestamp_us=...)
"""

from . import eg0104, st0102, st0601, st0903
from .decoder import KlvDecoder, KlvStats, decode, decode_one
from .jsonable import to_jsonable
from .metadata import SensorMetadata, to_metadata
from .packet import KlvPacket

__all__ = [
    "KlvDecoder", "KlvPacket", "KlvStats", "SensorMetadata", "decode", "decode_one", "eg0104",
    "st0102", "st0601", "st0903", "to_jsonable", "to_metadata",
]
