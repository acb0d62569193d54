"""MISB linear integer mappings ("FLINT", ST 0601 §6.3) and the 16-bit running-sum checksum.

Unsigned: value = lo + int * (hi - lo) / (2**(8n) - 1).
Signed:   value = int * (hi - lo) / (2**(8n) - 2), symmetric about zero; the most negative integer
(0x8000 for two bytes) is reserved as "error / out of range" and decodes to NaN.
The byte count n is the value's actual length, so a short or long encoding still decodes.
"""

from __future__ import annotations

import math


class Flint:
    """A linear mapping of [lo, hi] onto n-byte integers; decode/encode one value."""

    __slots__ = ("lo", "hi", "length", "signed", "scale", "_scales")

    def __init__(self, lo: float, hi: float, length: int, signed: bool) -> None:
        self.lo = lo
        self.hi = hi
        self.length = length
        self.signed = signed
        self._scales: dict[int, float] = {}
        self.scale = self.scale_for(length)

    def scale_for(self, n: int) -> float:
        s = self._scales.get(n)
        if s is None:
            denom = (1 << (8 * n)) - (2 if self.signed else 1)
            s = (self.hi - self.lo) / denom
            self._scales[n] = s
        return s

    def decode(self, b: bytes) -> float:
        n = len(b)
        if n == 0 or n > 8:
            raise ValueError(f"mapped value of {n} bytes")
        if self.signed:
            i = int.from_bytes(b, "big", signed=True)
            if i == -(1 << (8 * n - 1)):
                return math.nan  # reserved "error / out of range" indicator
            return i * self.scale_for(n)
        return self.lo + int.from_bytes(b, "big") * self.scale_for(n)

    def encode(self, v: float | None, length: int | None = None) -> bytes:
        n = length or self.length
        if v is None or (isinstance(v, float) and math.isnan(v)):
            if not self.signed:
                raise ValueError("unsigned mapping has no error value")
            return (1 << (8 * n - 1)).to_bytes(n, "big")
        v = min(max(float(v), self.lo), self.hi)
        s = self.scale_for(n)
        if self.signed:
            top = (1 << (8 * n - 1)) - 1
            i = max(-top, min(top, round(v / s)))
            return i.to_bytes(n, "big", signed=True)
        i = max(0, min((1 << (8 * n)) - 1, round((v - self.lo) / s)))
        return i.to_bytes(n, "big")

    def resolution(self, n: int | None = None) -> float:
        return self.scale_for(n or self.length)


def checksum16(data: bytes | memoryview) -> int:
    """ST 0601 / ST 0903 checksum: 16-bit sum of big-endian byte pairs (odd tail byte = high byte).

    Computed over the whole packet from the first key byte through the checksum tag and its
    length byte (`01 02`). O(n) in C via two slice sums.
    """
    return ((sum(data[0::2]) << 8) + sum(data[1::2])) & 0xFFFF
