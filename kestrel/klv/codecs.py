"""Value codecs for local-set items: each turns one item's value bytes into a Python value and back.

A tag table maps tag -> `Item(name, units, codec)`; the decoders never branch on tag numbers.
A codec raises (ValueError / KlvError / UnicodeDecodeError) on bytes it cannot read; the
local-set decoder then keeps the raw bytes for that item, so one bad item never loses the set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .ber import encode_ber_oid, read_ber_oid
from .imapb import Imap
from .mapping import Flint


class Codec:
    """Raw bytes in and out; subclasses interpret them."""

    kind = "raw"

    def decode(self, b: bytes) -> Any:
        return bytes(b)

    def encode(self, v: Any) -> bytes:
        return bytes(v)

    def fast(self) -> Callable[[bytes], Any]:
        """The callable the set decoders use per item (subclasses may specialise)."""
        return self.decode


class Item(NamedTuple):
    name: str
    units: str
    codec: Codec


RAW = Codec()


class UInt(Codec):
    kind = "uint"

    def __init__(self, length: int | None = None) -> None:
        self.length = length  # None = variable length, minimal encoding

    def fast(self) -> Callable[[bytes], Any]:
        if type(self).decode is not UInt.decode:
            return self.decode
        from_bytes = int.from_bytes

        def dec(b: bytes) -> int:
            if len(b) > 16:
                raise ValueError("bad integer length")
            return from_bytes(b, "big")

        return dec

    def decode(self, b: bytes) -> int:
        if not b or len(b) > 16:
            raise ValueError("bad integer length")
        return int.from_bytes(b, "big")

    def encode(self, v: Any) -> bytes:
        v = int(v)
        n = self.length or max(1, (v.bit_length() + 7) // 8)
        return v.to_bytes(n, "big")


class SInt(UInt):
    kind = "int"

    def decode(self, b: bytes) -> int:
        if not b or len(b) > 16:
            raise ValueError("bad integer length")
        return int.from_bytes(b, "big", signed=True)

    def encode(self, v: Any) -> bytes:
        v = int(v)
        n = self.length or max(1, (v.bit_length() + 8) // 8)
        return v.to_bytes(n, "big", signed=True)


class Enum(UInt):
    """An enumerated uint8 (or wider); `names` is for display, decoding keeps the integer."""

    kind = "enum"

    def __init__(self, names: Mapping[int, str], length: int = 1) -> None:
        super().__init__(length)
        self.names = dict(names)


class Bits(Enum):
    """A bit field; decoded as the integer (bit i = flag `names[i]`)."""

    kind = "bits"


class Utf8(Codec):
    kind = "str"

    def fast(self) -> Callable[[bytes], Any]:
        return bytes.decode

    def decode(self, b: bytes) -> str:
        return bytes(b).decode("utf-8")

    def encode(self, v: Any) -> bytes:
        return str(v).encode("utf-8")


class Utf16(Codec):
    kind = "str"

    def decode(self, b: bytes) -> str:
        return bytes(b).decode("utf-16-be")

    def encode(self, v: Any) -> bytes:
        return str(v).encode("utf-16-be")


class FlintCodec(Codec):
    kind = "float"

    def __init__(self, lo: float, hi: float, length: int, signed: bool) -> None:
        self.map = Flint(lo, hi, length, signed)

    def decode(self, b: bytes) -> float:
        return self.map.decode(b)

    def encode(self, v: Any) -> bytes:
        return self.map.encode(v)

    def resolution(self, n: int | None = None) -> float:
        return self.map.resolution(n)

    def fast(self) -> Callable[[bytes], Any]:
        """Hot path: one closure, nominal length inline, anything else via the general decode."""
        m = self.map
        n, lo, scale, general = m.length, m.lo, m.scale, m.decode
        from_bytes = int.from_bytes
        if m.signed:
            err = -(1 << (8 * n - 1))

            def dec_s(b: bytes) -> float:
                if len(b) != n:
                    return general(b)
                i = from_bytes(b, "big", signed=True)
                return i * scale if i != err else general(b)

            return dec_s

        def dec_u(b: bytes) -> float:
            if len(b) != n:
                return general(b)
            return lo + from_bytes(b, "big") * scale

        return dec_u


def U(lo: float, hi: float, n: int) -> FlintCodec:
    """Unsigned linear mapping of [lo, hi] onto n bytes."""
    return FlintCodec(lo, hi, n, False)


def S(lo: float, hi: float, n: int) -> FlintCodec:
    """Signed (symmetric) linear mapping with the reserved error value."""
    return FlintCodec(lo, hi, n, True)


class ImapCodec(Codec):
    kind = "float"

    def __init__(self, lo: float, hi: float, length: int) -> None:
        self.map = Imap(lo, hi, length)

    def decode(self, b: bytes) -> Any:
        return self.map.decode(b)

    def encode(self, v: Any) -> bytes:
        return self.map.encode(v)

    def resolution(self, n: int | None = None) -> float:
        return self.map.precision(n)


class Float(Codec):
    """IEEE 754 big-endian float32/float64 (by length)."""

    kind = "float"

    def __init__(self, length: int = 4) -> None:
        self.length = length

    def decode(self, b: bytes) -> float:
        import struct

        if len(b) == 4:
            return float(struct.unpack(">f", b)[0])
        if len(b) == 8:
            return float(struct.unpack(">d", b)[0])
        raise ValueError("float of bad length")

    def encode(self, v: Any) -> bytes:
        import struct

        return struct.pack(">f" if self.length == 4 else ">d", float(v))


class Oid(Codec):
    """A single BER-OID integer."""

    kind = "uint"

    def decode(self, b: bytes) -> int:
        v, pos = read_ber_oid(b, 0, len(b))
        if pos != len(b):
            raise ValueError("trailing bytes after BER-OID")
        return v

    def encode(self, v: Any) -> bytes:
        return encode_ber_oid(int(v))


class OidList(Codec):
    """A series of BER-OID integers."""

    kind = "list"

    def decode(self, b: bytes) -> list[int]:
        out: list[int] = []
        pos, end = 0, len(b)
        while pos < end:
            v, pos = read_ber_oid(b, pos, end)
            out.append(v)
        return out

    def encode(self, v: Any) -> bytes:
        return b"".join(encode_ber_oid(int(x)) for x in v)


class Func(Codec):
    """A pack codec given as a pair of functions (used for ST 0601's structured packs)."""

    kind = "pack"

    def __init__(self, dec: Callable[[bytes], Any], enc: Callable[[Any], bytes]) -> None:
        self._dec = dec
        self._enc = enc

    def decode(self, b: bytes) -> Any:
        return self._dec(bytes(b))

    def encode(self, v: Any) -> bytes:
        return self._enc(v)


class Bytes(Codec):
    """Opaque user bytes that the standard defines as such (not an uninterpreted item)."""

    kind = "bytes"
