"""MISB ST 1201 IMAPB: floating point to integer mapping, forward and reverse, with special values.

Terms (ST 1201 §8.1.2): bPow = ceil(log2(b - a)), dPow = 8L - 1, sF = 2**(dPow - bPow),
sR = 2**(bPow - dPow), zOffset = sF*a - floor(sF*a) when a < 0 < b, else 0.
Forward y = trunc(sF * (x - a) + zOffset); reverse x = sR * (y - zOffset) + a.
A value whose top bit is set (and is not exactly 0x80...) is a special value: infinities, NaNs,
below-minimum, above-maximum, user defined (§8.2.2).
"""

from __future__ import annotations

import math
from typing import NamedTuple


class ImapSpecial(NamedTuple):
    """A non-normal IMAPB value. kind: 'user', 'qnan', 'snan', 'below_min', 'above_max'."""

    kind: str
    negative: bool = False
    other_bits: int = 0


_KIND_BY_ID = {0b1010: ("qnan", False), 0b1110: ("qnan", True), 0b1011: ("snan", False),
               0b1111: ("snan", True), 0b1000: ("user", False)}
_ID_BY_KIND = {v: k for k, v in _KIND_BY_ID.items()}


class Imap:
    """IMAPB over [lo, hi] with a default length in bytes; decode accepts any length 1..8."""

    __slots__ = ("lo", "hi", "length", "_terms")

    def __init__(self, lo: float, hi: float, length: int) -> None:
        self.lo = lo
        self.hi = hi
        self.length = length
        self._terms: dict[int, tuple[float, float, float]] = {}

    def terms(self, n: int) -> tuple[float, float, float]:
        t = self._terms.get(n)
        if t is None:
            b_pow = math.ceil(math.log2(self.hi - self.lo))
            d_pow = 8 * n - 1
            s_f = 2.0 ** (d_pow - b_pow)
            s_r = 2.0 ** (b_pow - d_pow)
            z = s_f * self.lo - math.floor(s_f * self.lo) if self.lo < 0 < self.hi else 0.0
            t = (s_f, s_r, z)
            self._terms[n] = t
        return t

    def precision(self, n: int | None = None) -> float:
        return self.terms(n or self.length)[1]

    def decode(self, b: bytes) -> float | ImapSpecial:
        n = len(b)
        if n == 0 or n > 8:
            raise ValueError(f"IMAPB value of {n} bytes")
        y = int.from_bytes(b, "big")
        msb = 1 << (8 * n - 1)
        if y & msb and y != msb:
            return _decode_special(y, n)
        _, s_r, z = self.terms(n)
        x = s_r * (y - z) + self.lo
        if abs(x) < s_r / 2:
            x = 0.0  # ST 1201: zero must decode exactly
        return x

    def encode(self, v: float | ImapSpecial, length: int | None = None) -> bytes:
        n = length or self.length
        shift = 8 * (n - 1)
        if isinstance(v, ImapSpecial):
            if v.kind == "below_min":
                y = 0xE0 << shift
            elif v.kind == "above_max":
                y = 0xE1 << shift
            else:
                ident = _ID_BY_KIND[(v.kind, v.negative if v.kind != "user" else False)]
                y = ((0x80 | (ident << 3)) << shift) | v.other_bits
            return y.to_bytes(n, "big")
        x = float(v)
        if math.isnan(x):
            return (0xD0 << shift).to_bytes(n, "big")
        if math.isinf(x):
            return ((0xE8 if x < 0 else 0xC8) << shift).to_bytes(n, "big")
        if x < self.lo:
            return (0xE0 << shift).to_bytes(n, "big")
        if x > self.hi:
            return (0xE1 << shift).to_bytes(n, "big")
        s_f, _, z = self.terms(n)
        y = int(s_f * (x - self.lo) + z)
        return y.to_bytes(n, "big")


def _decode_special(y: int, n: int) -> float | ImapSpecial:
    nbits = 8 * n - 5
    other = y & ((1 << nbits) - 1)
    ident = (y >> nbits) & 0b1111
    if ident == 0b1001:
        return math.inf
    if ident == 0b1101:
        return -math.inf
    if ident == 0b1100:
        sub = (y >> (nbits - 3)) & 0b111
        if sub == 0:
            return ImapSpecial("below_min")
        if sub == 1:
            return ImapSpecial("above_max")
        raise ValueError("reserved IMAPB special value")
    kind = _KIND_BY_ID.get(ident)
    if kind is None:
        raise ValueError("reserved IMAPB special value")
    return ImapSpecial(kind[0], kind[1], other)
