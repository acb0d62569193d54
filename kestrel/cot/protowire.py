"""Protobuf varints for the TAK protocol headers (`0xBF <varint>`): the stream framer and the mesh header.

The TakMessage payload itself is encoded and decoded by the `protobuf` package (kestrel/cot/proto.py);
these helpers only read and write the length / version varint in front of it, strictly: a truncated
varint, one longer than 10 bytes or over 64 bits raises CotError.
Worst case: O(1) (at most 10 bytes read).
"""

from __future__ import annotations

from kestrel.cot.errors import CotError

MAX_VARINT = 10


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128 varint (protobuf / TAK header), n in [0, 2**64)."""
    if n < 0 or n >= 1 << 64:
        raise CotError(f"varint out of range: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read one varint at `pos` -> (value, next_pos). CotError if truncated, > 10 bytes or > 64 bits."""
    if end is None:
        end = len(buf)
    result = 0
    shift = 0
    stop = pos + MAX_VARINT if end > pos + MAX_VARINT else end
    for i in range(pos, stop):
        b = buf[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >= 1 << 64:
                raise CotError("bad varint: more than 64 bits")
            return result, i + 1
        shift += 7
    if end - pos >= MAX_VARINT:
        raise CotError("bad varint: longer than 10 bytes")
    raise CotError("bad varint: truncated")


def try_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """`decode_varint` for a buffer that may still grow (a stream): None while it is incomplete."""
    end = len(buf)
    if end - pos < MAX_VARINT and all(b >= 0x80 for b in buf[pos:end]):
        return None
    return decode_varint(buf, pos, end)
