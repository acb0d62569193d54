"""JSON-ready views of decoded packets (for `kestrel fmv info --json` and reports).

Shape: {"pts": float|None, "set": "ST0601", "checksum_ok": bool|None, "tags": {"<tag>": value}}
plus "error" when the packet did not decode and "stream" when the demuxer set it.
Nested sets become {"<tag>": value} objects, VTargets {"id": n, "tags": {...}}, raw bytes
{"raw": "<hex>"}, NaN/inf null, IMAPB special values {"imap": kind, ...}.
"""

from __future__ import annotations

import math
from typing import Any

from .imapb import ImapSpecial
from .packet import KlvPacket


def jsonable_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, bytes | bytearray | memoryview):
        return {"raw": bytes(v).hex()}
    if isinstance(v, KlvPacket):
        return {str(k): jsonable_value(x) for k, x in v.tags.items()}
    if isinstance(v, ImapSpecial):
        return {"imap": v.kind, "negative": v.negative, "other_bits": v.other_bits}
    if isinstance(v, dict):
        return {str(k): jsonable_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable_value(x) for x in v]
    tid = getattr(v, "target_id", None)
    if tid is not None:  # st0903.VTarget
        return {"id": tid, "tags": {str(k): jsonable_value(x) for k, x in v.tags.items()}}
    return str(v)


def to_jsonable(pkt: KlvPacket) -> dict[str, Any]:
    out: dict[str, Any] = {"pts": pkt.pts, "set": pkt.set_name, "checksum_ok": pkt.checksum_ok,
                           "tags": {str(k): jsonable_value(v) for k, v in pkt.tags.items()}}
    if pkt.stream is not None:
        out["stream"] = pkt.stream
    if pkt.error is not None:
        out["error"] = pkt.error
    return out
