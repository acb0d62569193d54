"""A small protobuf (proto3) wire codec driven by a schema table — no codegen, no protobuf runtime.

Goal: encode/decode the handful of TAK messages fast and *strictly*: every malformed input (truncated
varint, varint longer than 10 bytes, length past the end, wrong wire type for a known field, field 0,
groups, bad UTF-8) raises CotError; unknown fields are skipped as protobuf requires.
Schema: `{message: {field_number: (name, kind, submessage|None)}}`, kinds `string uint64 uint32 double
message`. Decoded messages are dicts holding only the fields present on the wire; encoding writes fields
in number order and omits proto3 defaults ("" / 0 / 0.0) except sub-messages, which are written when
present (even if empty) because their presence carries meaning (TAK detail extensions).
Worst case: O(n) in the bytes; recursion depth bounded by the schema (no recursive messages).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from kestrel.cot.errors import CotError

Field = tuple[str, str, str | None]
Schema = dict[str, dict[int, Field]]

_WIRE = {"string": 2, "message": 2, "uint64": 0, "uint32": 0, "double": 1}
_D = struct.Struct("<d")
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


def decode(schema: Schema, msg: str, buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None,
           reject: re.Pattern[str] | None = None) -> dict[str, Any]:
    """Decode message `msg` from buf[pos:end] into a dict of the fields present. A string field matching
    `reject` (e.g. characters XML cannot carry) raises CotError."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    fields = schema[msg]
    if end is None:
        end = len(buf)
    out: dict[str, Any] = {}
    val: Any
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = decode_varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise CotError(f"{msg}: field number 0")
        f = fields.get(num)
        if wt == 2:
            if pos >= end:
                raise CotError(f"{msg}: truncated length")
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = decode_varint(buf, pos, end)
            if n > end - pos:
                raise CotError(f"{msg}: length {n} runs past the end")
            a = pos
            pos += n
        elif wt == 0:
            val, pos = decode_varint(buf, pos, end)
        elif wt == 1:
            if pos + 8 > end:
                raise CotError(f"{msg}: truncated fixed64")
            val = _D.unpack_from(buf, pos)[0]
            pos += 8
        elif wt == 5:
            if pos + 4 > end:
                raise CotError(f"{msg}: truncated fixed32")
            pos += 4
        else:
            raise CotError(f"{msg}: unsupported wire type {wt}")
        if f is None:
            continue  # unknown field: skipped, as protobuf requires
        name, kind, sub = f
        if _WIRE[kind] != wt:
            raise CotError(f"{msg}.{name}: wire type {wt}, expected {_WIRE[kind]}")
        if kind == "string":
            try:
                text = buf[a:pos].decode("utf-8")
            except UnicodeDecodeError:
                raise CotError(f"{msg}.{name}: not UTF-8") from None
            if reject is not None and reject.search(text):
                raise CotError(f"{msg}.{name}: character not allowed")
            out[name] = text
        elif kind == "message":
            assert sub is not None
            inner = decode(schema, sub, buf, a, pos, reject)
            prev = out.get(name)
            out[name] = {**prev, **inner} if prev else inner  # repeated sub-message: merge
        elif kind == "uint32":
            out[name] = val & 0xFFFFFFFF
        else:
            out[name] = val  # uint64, double
    return out


def _varint(n: int) -> bytes:
    return _SMALL[n] if n < 128 else encode_varint(n)


_SMALL = [bytes([i]) for i in range(128)]
_KEYS: dict[str, list[tuple[str, str, str | None, bytes]]] = {}


def _fields(schema: Schema, msg: str) -> list[tuple[str, str, str | None, bytes]]:
    key = f"{id(schema)}:{msg}"
    got = _KEYS.get(key)
    if got is None:
        got = [(name, kind, sub, encode_varint(num << 3 | _WIRE[kind]))
               for num, (name, kind, sub) in sorted(schema[msg].items())]
        _KEYS[key] = got
    return got


def encode(schema: Schema, msg: str, value: dict[str, Any]) -> bytes:
    """Encode dict `value` as message `msg` (fields in number order, proto3 defaults omitted)."""
    out = bytearray()
    for name, kind, sub, key in _fields(schema, msg):
        v = value.get(name)
        if v is None:
            continue
        if kind == "string":
            if v:
                raw = v.encode("utf-8")
                out += key + _varint(len(raw)) + raw
        elif kind == "message":
            assert sub is not None
            body = encode(schema, sub, v)
            out += key + _varint(len(body)) + body
        elif kind == "double":
            if v != 0.0 or math.copysign(1.0, v) < 0:  # keep -0.0 distinct, as protobuf does
                out += key + _D.pack(v)
        elif v:
            out += key + _varint(int(v))
    return bytes(out)
