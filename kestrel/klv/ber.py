"""SMPTE 336 / MISB basics: universal keys, BER lengths, BER-OID tags.

Pure functions over `bytes`; each reader takes a buffer, a position and an end bound and returns
(value, new position), raising `KlvError` when the bytes run out or are malformed. O(bytes read).
"""

from __future__ import annotations

UL_PREFIX = b"\x06\x0e\x2b\x34"  # every SMPTE universal label starts with these four bytes
MAX_LENGTH_BYTES = 8  # a BER long-form length wider than 8 bytes is garbage, not a real set
MAX_OID_BYTES = 9  # up to 63 payload bits


class KlvError(ValueError):
    """Malformed or truncated KLV. Raised inside codecs, caught by the decoders (never escapes)."""


def read_ber_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a BER length (short form < 128, or 0x80|n followed by n big-endian bytes)."""
    if pos >= end:
        raise KlvError("truncated BER length")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    n = first & 0x7F
    if n == 0 or n > MAX_LENGTH_BYTES:
        raise KlvError(f"bad BER length prefix 0x{first:02x}")
    if pos + n > end:
        raise KlvError("truncated BER long-form length")
    return int.from_bytes(buf[pos : pos + n], "big"), pos + n


def encode_ber_length(n: int) -> bytes:
    """Shortest BER length encoding (short form below 128)."""
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def read_ber_oid(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a BER-OID integer: 7 bits per byte, high bit set on every byte but the last."""
    value = 0
    for i in range(MAX_OID_BYTES):
        if pos >= end:
            raise KlvError("truncated BER-OID")
        b = buf[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, pos
        if i == 0 and b == 0x80:
            raise KlvError("non-minimal BER-OID")
    raise KlvError("BER-OID too long")


def encode_ber_oid(n: int) -> bytes:
    """BER-OID encoding of a non-negative integer (tags >= 128 take two bytes)."""
    if n < 0:
        raise ValueError("negative BER-OID")
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def encode_lv(value: bytes) -> bytes:
    """BER length + value."""
    return encode_ber_length(len(value)) + value


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One local-set item: BER-OID tag, BER length, value."""
    tag_bytes = bytes((tag,)) if tag < 0x80 else encode_ber_oid(tag)
    return tag_bytes + encode_ber_length(len(value)) + value


def read_lv(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """A BER length then that many bytes."""
    n, pos = read_ber_length(buf, pos, end)
    if pos + n > end:
        raise KlvError("truncated length-prefixed field")
    return buf[pos : pos + n], pos + n


def read_series(b: bytes) -> list[bytes]:
    """A series of BER-length-prefixed elements (MISB "series" type); O(n), raises on truncation."""
    out, pos, end = [], 0, len(b)
    while pos < end:
        item, pos = read_lv(b, pos, end)
        out.append(item)
    return out
