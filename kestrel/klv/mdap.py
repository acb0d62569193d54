"""MISB ST 1303 MDAP/MDARRAY: multi-dimensional arrays (used by ST 1206, ST 1601, ST 1002).

Layout: number of dimensions (BER-OID), each dimension size (BER-OID), element size (BER-OID),
array processing algorithm (1 byte: 1 natural, 2 IMAP), IMAP bounds (two IEEE floats) when
APA = 2, then the elements. Natural elements use the carrying item's own element codec.
Decoded as a dict named like KWIVER's JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .ber import KlvError, encode_ber_oid, read_ber_oid
from .codecs import Float, Func
from .imapb import Imap

APA_NATURAL, APA_IMAP = 1, 2
_F = Float()


def decode_mdap(b: bytes, natural: Callable[[bytes], Any]) -> dict[str, Any]:
    end = len(b)
    ndim, pos = read_ber_oid(b, 0, end)
    if ndim < 1 or ndim > 8:
        raise KlvError("MDAP: bad number of dimensions")
    sizes = []
    for _ in range(ndim):
        s, pos = read_ber_oid(b, pos, end)
        if s < 1:
            raise KlvError("MDAP: empty dimension")
        sizes.append(s)
    esize, pos = read_ber_oid(b, pos, end)
    if pos >= end or esize < 1:
        raise KlvError("MDAP: truncated header")
    apa = b[pos]
    pos += 1
    count = math.prod(sizes)
    if count * esize > end - pos:
        raise KlvError("MDAP: array runs past the end")
    out: dict[str, Any] = {"sizes": sizes, "element-size": esize, "apa": apa, "apa-params-length": 0,
                           "imap-params": None}
    if apa == APA_IMAP:
        plen = end - pos - count * esize
        if plen not in (8, 16):
            raise KlvError("MDAP: bad IMAP parameter length")
        h = plen // 2
        lo, hi = _F.decode(b[pos : pos + h]), _F.decode(b[pos + h : pos + plen])
        pos += plen
        out["apa-params-length"] = plen
        out["imap-params"] = {"lower-bound": lo, "upper-bound": hi}
        imap = Imap(lo, hi, esize)
        dec: Callable[[bytes], Any] = imap.decode
    elif apa == APA_NATURAL:
        if end - pos != count * esize:
            raise KlvError("MDAP: trailing bytes")
        dec = natural
    else:
        raise KlvError(f"MDAP: array processing algorithm {apa} not supported")
    out["elements"] = [dec(b[pos + i * esize : pos + (i + 1) * esize]) for i in range(count)]
    return out


def encode_mdap(v: dict[str, Any], natural: Callable[[Any, int], bytes]) -> bytes:
    sizes = list(v["sizes"])
    esize = int(v.get("element-size") or 8)  # 0 / missing = not chosen: 8-byte natural elements
    apa = int(v.get("apa") or APA_NATURAL)
    out = encode_ber_oid(len(sizes)) + b"".join(encode_ber_oid(s) for s in sizes) + encode_ber_oid(esize)
    out += bytes((apa,))
    if apa == APA_IMAP:
        p = v["imap-params"]
        plen = int(v.get("apa-params-length") or 8)
        fl = Float(plen // 2)
        out += fl.encode(p["lower-bound"]) + fl.encode(p["upper-bound"])
        imap = Imap(float(p["lower-bound"]), float(p["upper-bound"]), esize)
        return out + b"".join(imap.encode(x, esize) for x in v["elements"])
    return out + b"".join(natural(x, esize) for x in v["elements"])


def mdap_codec(natural_dec: Callable[[bytes], Any], natural_enc: Callable[[Any, int], bytes]) -> Func:
    return Func(lambda b: decode_mdap(b, natural_dec), lambda v: encode_mdap(v, natural_enc))


def _float_enc(x: Any, n: int) -> bytes:
    return Float(n).encode(x)


def _uint_enc(x: Any, n: int) -> bytes:
    return int(x).to_bytes(n, "big")


FLOAT_MDAP = mdap_codec(_F.decode, _float_enc)
UINT_MDAP = mdap_codec(lambda b: int.from_bytes(b, "big"), _uint_enc)
