"""Generic MISB local set: decode/encode a body by a tag table; standalone packets with checksums.

A `SetSpec` is data (name, 16-byte key, tag table, checksum tag). One pass over the body,
O(n) in its length; an item the codec cannot read keeps its raw bytes; a truncated body
raises `KlvError` to the caller, which turns it into an error record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ber import KlvError, encode_ber_length, encode_tlv, read_ber_length, read_ber_oid
from .codecs import Codec, Item
from .mapping import Flint, checksum16
from .packet import KlvPacket


@dataclass
class SetSpec:
    name: str  # "ST0601"
    key: bytes  # 16-byte universal key (b"" for sets that only live nested)
    table: dict[int, Item]
    checksum_tag: int | None = None
    first_tags: tuple[int, ...] = ()  # encoded first (e.g. ST 0601 tag 2, the time stamp)
    # Optional hooks: after decoding a body (cross-item context), and to order items for encoding.
    finish: Callable[[dict[int, Any]], None] | None = None
    arrange: Callable[[list[int], Mapping[int, Any]], list[int]] | None = None
    decoders: dict[int, Callable[[bytes], Any]] = field(default_factory=dict, repr=False)
    # Hot path for linear mappings at their nominal length: tag -> (length, lo, scale, signed, error int)
    flints: dict[int, tuple[int, float, float, bool, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.decoders = {tag: item.codec.fast() for tag, item in self.table.items()}
        for tag, item in self.table.items():
            m = getattr(item.codec, "map", None)
            if isinstance(m, Flint):
                err = -(1 << (8 * m.length - 1)) if m.signed else -1
                self.flints[tag] = (m.length, 0.0 if m.signed else m.lo, m.scale, m.signed, err)

    def tag_name(self, tag: int) -> str:
        item = self.table.get(tag)
        return item.name if item else f"Unknown tag {tag}"


def decode_body(spec: SetSpec, buf: bytes, pos: int, end: int) -> dict[int, Any]:
    """Decode the items of a local set body buf[pos:end] into {tag: value}.

    Zero-length items decode to None; unknown tags and unreadable values keep raw bytes.
    """
    decoders = spec.decoders
    flints = spec.flints
    from_bytes = int.from_bytes
    tags: dict[int, Any] = {}
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = read_ber_oid(buf, pos - 1, end)
        if pos >= end:
            raise KlvError(f"{spec.name} tag {tag}: truncated length")
        n = buf[pos]
        pos += 1
        if n >= 0x80:
            n, pos = read_ber_length(buf, pos - 1, end)
        vend = pos + n
        if vend > end:
            raise KlvError(f"{spec.name} tag {tag}: value runs past the end of the set")
        value = buf[pos:vend]
        pos = vend
        f = flints.get(tag)
        if f is not None and f[0] == n:  # inline FLINT at nominal length (the common case)
            i = from_bytes(value, "big", signed=f[3])
            if i != f[4]:
                tags[tag] = f[1] + i * f[2]
                continue
        if not n:
            tags[tag] = None
            continue
        dec = decoders.get(tag)
        if dec is None:
            tags[tag] = value
            continue
        try:
            tags[tag] = dec(value)
        except (ValueError, KlvError, IndexError, ArithmeticError, TypeError, RecursionError):
            tags[tag] = value  # keep what we could not interpret, losslessly
    if spec.finish is not None:
        spec.finish(tags)
    return tags


def encode_body(spec: SetSpec, values: Mapping[int, Any]) -> bytes:
    """Encode {tag: value} (first_tags first, then in the given order); bytes values go raw."""
    order = [t for t in spec.first_tags if t in values]
    order += [t for t in values if t not in spec.first_tags and t != spec.checksum_tag]
    if spec.arrange is not None:
        order = spec.arrange(order, values)
    parts = []
    for tag in order:
        v = values[tag]
        if v is None:
            raw = b""
        elif isinstance(v, bytes | bytearray):
            raw = bytes(v)
        else:
            item = spec.table.get(tag)
            if item is None:
                raise ValueError(f"{spec.name}: tag {tag} is unknown; pass raw bytes")
            raw = item.codec.encode(v)
        parts.append(encode_tlv(tag, raw))
    return b"".join(parts)


def encode_packet(spec: SetSpec, values: Mapping[int, Any]) -> bytes:
    """A standalone packet: key, BER length, body, and the checksum item when the set has one."""
    body = encode_body(spec, values)
    if spec.checksum_tag is None:
        return spec.key + encode_ber_length(len(body)) + body
    body += bytes((spec.checksum_tag, 2))
    head = spec.key + encode_ber_length(len(body) + 2) + body
    return head + checksum16(head).to_bytes(2, "big")


def decode_packet(spec: SetSpec, data: bytes, start: int, body_start: int, end: int) -> KlvPacket:
    """Decode a standalone set data[start:end] whose body starts at body_start (after key+length)."""
    raw = data[start:end]
    checksum_ok: bool | None = None
    body_end = end
    ct = spec.checksum_tag
    if ct is not None:
        # The checksum item is the last 4 bytes: tag, 0x02, two bytes of sum.
        if end - body_start >= 4 and data[end - 4] == ct and data[end - 3] == 2:
            stored = (data[end - 2] << 8) | data[end - 1]
            checksum_ok = checksum16(raw[:-2]) == stored
            body_end = end - 4
        else:
            checksum_ok = False  # a checksummed set without its checksum is not verified
    try:
        tags = decode_body(spec, data, body_start, body_end)
    except KlvError as exc:  # structure broken: report it, with the checksum verdict
        return KlvPacket(key=spec.key, set_name=spec.name, checksum_ok=checksum_ok, error=str(exc), raw=raw)
    if ct is not None and body_end != end:
        tags[ct] = (data[end - 2] << 8) | data[end - 1]
    return KlvPacket(key=spec.key, set_name=spec.name, tags=tags, checksum_ok=checksum_ok, raw=raw)


class Nested(Codec):
    """A local set carried as one item of another set (ST 0601 tag 48 -> ST 0102, 74 -> ST 0903)."""

    kind = "set"

    def __init__(self, spec_ref: Callable[[], SetSpec]) -> None:
        self._spec_ref = spec_ref  # late-bound: tables may refer to each other (ST 1607 amend)

    @property
    def spec(self) -> SetSpec:
        return self._spec_ref()

    def decode(self, b: bytes) -> KlvPacket:
        spec = self.spec
        end = len(b)
        tags = decode_body(spec, b, 0, end)
        return KlvPacket(key=b"", set_name=spec.name, tags=tags, raw=bytes(b))

    def encode(self, v: Any) -> bytes:
        values = v.tags if isinstance(v, KlvPacket) else v
        return encode_body(self.spec, values)


class SetSeries(Codec):
    """A series of BER-length-prefixed local sets of one kind (ST 0903 algorithm/ontology series...)."""

    kind = "series"

    def __init__(self, spec_ref: Callable[[], SetSpec]) -> None:
        self._spec_ref = spec_ref

    @property
    def spec(self) -> SetSpec:
        return self._spec_ref()

    def decode(self, b: bytes) -> list[KlvPacket]:
        spec = self.spec
        out: list[KlvPacket] = []
        pos, end = 0, len(b)
        while pos < end:
            n, pos = read_ber_length(b, pos, end)
            if pos + n > end:
                raise KlvError(f"{spec.name} series element runs past the end")
            out.append(KlvPacket(key=b"", set_name=spec.name, tags=decode_body(spec, b, pos, pos + n)))
            pos += n
        return out

    def encode(self, v: Any) -> bytes:
        parts = []
        for x in v:
            body = encode_body(self.spec, x.tags if isinstance(x, KlvPacket) else x)
            parts.append(encode_ber_length(len(body)) + body)
        return b"".join(parts)
