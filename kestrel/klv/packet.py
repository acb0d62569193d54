"""`KlvPacket`: one decoded KLV set (or the error record for bytes that would not decode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class KlvPacket:
    key: bytes  # 16-byte universal key (b"" if not even a key could be read)
    set_name: str  # "ST0601", "ST0102", "ST0903", "EG0104", ... or "unknown"
    # Decoded values by tag number (local sets) or by name (universal sets). Nested local sets
    # (ST 0601 tag 48 -> ST 0102, tag 74 -> ST 0903) are KlvPacket values. Unknown tags: raw bytes.
    tags: dict[Any, Any] = field(default_factory=dict)
    checksum_ok: bool | None = None  # None = this set has no checksum
    error: str | None = None  # set for truncated/garbage input; never raised out of a decoder
    raw: bytes = b""
    pts: float | None = None  # seconds, filled by the demuxer when the carriage gives a time
    stream: int | None = None  # PID / stream index it came from, filled by the demuxer
