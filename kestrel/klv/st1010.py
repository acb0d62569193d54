"""MISB ST 1010 SDCC-FLP (Standard Deviation and Cross Correlation Floating Length Pack), ST 0601
tag 102. The pack's N "members" are the N items that precede it in the packet; ST 0601's set
decoder fills them in (`fill_members`) and its encoder places them right before the pack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ber import KlvError, encode_ber_oid, read_ber_oid
from .codecs import Float, Func
from .imapb import Imap


def dec_sdcc(b: bytes) -> dict[str, Any]:
    end = len(b)
    n, pos = read_ber_oid(b, 0, end)
    start = pos
    pc, pos = read_ber_oid(b, pos, min(end, pos + 2))
    long_pc = pos - start > 1
    if long_pc:
        s_len, s_imap = pc & 0xF, bool((pc >> 4) & 1)
        r_len, r_imap, sparse = (pc >> 7) & 0xF, bool((pc >> 11) & 1), bool((pc >> 12) & 1)
    else:
        r_len, sparse, s_len = pc & 7, bool((pc >> 3) & 1), (pc >> 4) & 7
        s_imap, r_imap = False, True
    if s_imap:
        raise KlvError("SDCC-FLP: IMAPB sigma needs a range ST 0601 does not give")
    rho_count = n * (n - 1) // 2
    bits = b""
    if sparse:
        nb = (rho_count + 7) // 8
        bits, pos = b[pos : pos + nb], pos + nb
    sigma: list[float] = []
    if s_len:
        f = Float(s_len)
        for _ in range(n):
            if pos + s_len > end:
                raise KlvError("SDCC-FLP: truncated sigma")
            sigma.append(f.decode(b[pos : pos + s_len]))
            pos += s_len
    rho: list[Any] = []
    if r_len:
        dec = Imap(-1.0, 1.0, r_len).decode if r_imap else Float(r_len).decode
        for i in range(rho_count):
            if sparse and not (bits[i // 8] & (0x80 >> (i % 8))):
                rho.append(0.0)
                continue
            if pos + r_len > end:
                raise KlvError("SDCC-FLP: truncated rho")
            rho.append(dec(b[pos : pos + r_len]))
            pos += r_len
    if pos != end:
        raise KlvError("SDCC-FLP: trailing bytes")
    return {"members": [0] * n, "sigma": sigma, "rho": rho, "sigma-length": s_len, "rho-length": r_len,
            "sigma-uses-imap": s_imap, "rho-uses-imap": r_imap, "long-parse-control": long_pc, "sparse": sparse}


def enc_sdcc(v: Mapping[str, Any]) -> bytes:
    n = len(v["members"])
    if not n:
        raise ValueError("SDCC-FLP: members cannot be empty")
    s_len = int(v.get("sigma-length") or (4 if v.get("sigma") else 0))
    r_len = int(v.get("rho-length") or (3 if v.get("rho") else 0))
    r_imap, sparse = bool(v.get("rho-uses-imap", True)), bool(v.get("sparse", False))
    if v.get("long-parse-control", False) or s_len > 7 or r_len > 7 or not r_imap:
        pc = (int(sparse) << 12) | (int(r_imap) << 11) | (r_len << 7) | s_len
        out = encode_ber_oid(n) + bytes((0x80 | (pc >> 7), pc & 0x7F))
    else:
        out = encode_ber_oid(n) + encode_ber_oid((s_len << 4) | (int(sparse) << 3) | r_len)
    rho = list(v.get("rho") or [])
    if sparse and r_len:
        bits = bytearray((len(rho) + 7) // 8)
        for i, r in enumerate(rho):
            if r:
                bits[i // 8] |= 0x80 >> (i % 8)
        out += bytes(bits)
    if s_len:
        out += b"".join(Float(s_len).encode(s) for s in v["sigma"])
    if r_len:
        enc = (lambda x: Imap(-1.0, 1.0, r_len).encode(x)) if r_imap else Float(r_len).encode
        out += b"".join(enc(r) for r in rho if not (sparse and not r))
    return out


SDCC = Func(dec_sdcc, enc_sdcc)


def fill_members(tags: dict[int, Any], tag: int = 102) -> None:
    """Name the SDCC-FLP's members: the items just before it in packet (= dict insertion) order."""
    v = tags.get(tag)
    if isinstance(v, dict) and "members" in v:
        keys = list(tags)
        i = keys.index(tag)
        n = len(v["members"])
        v["members"] = keys[max(0, i - n) : i]


def arrange(order: list[int], values: Mapping[int, Any], tag: int = 102) -> list[int]:
    """Encoding order with the SDCC-FLP's members moved right before it."""
    v = values.get(tag)
    if not isinstance(v, Mapping) or tag not in order:
        return order
    members = [m for m in v.get("members", []) if m in values and m != tag]
    rest = [t for t in order if t not in members and t != tag]
    return rest + members + [tag]
