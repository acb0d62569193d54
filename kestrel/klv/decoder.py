"""Streaming KLV decoder: finds sets by universal key, dispatches to the set's module.

Sans-I/O: `KlvDecoder().feed(bytes) -> list[KlvPacket]`, `flush()` at end of stream, and the
one-shot `decode(bytes)`. Bytes that are not KLV are skipped up to the next key prefix and
reported as one error record; a truncated or oversize packet becomes an error record; a decoder
never raises on input bytes. Buffers are bounded by `max_packet` (default 1 MiB). O(n) in bytes
fed: once a pending packet's key and length are in, later chunks are only appended until it is
complete (no re-parse per chunk).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import eg0104, st0102, st0601, st0806, st0903, st1002, st1206, st1601, st1602
from .ber import UL_PREFIX
from .localset import SetSpec, decode_packet
from .packet import KlvPacket

_JUNK_SAMPLE = 256
PacketDecoder = Callable[[bytes, int, int, int], KlvPacket]


def _spec_decoder(spec: SetSpec) -> PacketDecoder:
    def dec(data: bytes, start: int, body: int, end: int) -> KlvPacket:
        return decode_packet(spec, data, start, body, end)

    return dec


def _norm(key: bytes) -> bytes:
    """SMPTE 336: the version byte (index 7) is ignored when matching keys."""
    return key[:7] + key[8:]


REGISTRY: dict[bytes, tuple[str, PacketDecoder]] = {
    _norm(st0601.KEY): ("ST0601", _spec_decoder(st0601.SPEC)),
    _norm(st0903.KEY): ("ST0903", _spec_decoder(st0903.SPEC)),
    _norm(st0102.KEY): ("ST0102", _spec_decoder(st0102.SPEC)),
    _norm(eg0104.KEY): ("EG0104", eg0104.decode_packet),
    # Standalone forms of sets usually nested in ST 0601 (their CRC checksums are not verified).
    **{_norm(m.KEY): (m.SPEC.name, _spec_decoder(m.SPEC)) for m in (st0806, st1002, st1206, st1601, st1602)},
}


@dataclass
class KlvStats:
    """Per-stream counts: what arrived, what was wrong, what was dropped."""

    packets: Counter[str] = field(default_factory=Counter)  # by set name
    checksum_failures: int = 0
    errors: int = 0
    dropped: int = 0
    bytes_skipped: int = 0


def _read_packet(data: bytes, pos: int, end: int, final: bool, max_packet: int) -> tuple[KlvPacket | None, int]:
    """Parse one packet whose key starts at data[pos]. Returns (packet, next pos), or (None, pos) if
    more bytes are needed (only when not `final`)."""
    if end - pos < 17:
        if not final:
            return None, pos
        return KlvPacket(key=bytes(data[pos:end]), set_name="unknown", error="truncated key",
                         raw=bytes(data[pos:end])), end
    key = bytes(data[pos : pos + 16])
    p = pos + 16
    first = data[p]
    p += 1
    if first < 0x80:
        length = first
    else:
        nb = first & 0x7F
        if nb == 0 or nb > 8:
            return KlvPacket(key=key, set_name="unknown", error=f"bad BER length byte 0x{first:02x}",
                             raw=key), pos + 16
        if end - p < nb:
            if not final:
                return None, pos
            return KlvPacket(key=key, set_name="unknown", error="truncated length", raw=bytes(data[pos:end])), end
        length = int.from_bytes(data[p : p + nb], "big")
        p += nb
    entry = REGISTRY.get(_norm(key))
    name = entry[0] if entry else "unknown"
    if length > max_packet:
        return KlvPacket(key=key, set_name=name, error=f"length {length} exceeds limit {max_packet}",
                         raw=key), pos + 16
    stop = p + length
    if stop > end:
        if not final:
            return None, pos
        return KlvPacket(key=key, set_name=name, error=f"truncated: {end - p} of {length} value bytes",
                         raw=bytes(data[pos:end])), end
    if entry is None:
        return KlvPacket(key=key, set_name="unknown", raw=bytes(data[pos:stop])), stop
    try:
        pkt = entry[1](data, pos, p, stop)
    except Exception as exc:  # noqa: BLE001 - policy: no exception escapes the decoder on any bytes
        pkt = KlvPacket(key=key, set_name=name, error=str(exc) or type(exc).__name__, raw=bytes(data[pos:stop]))
    return pkt, stop


class KlvDecoder:
    """Incremental decoder for one KLV byte stream (one PID / file)."""

    def __init__(self, *, drop_bad_checksum: bool = False, max_packet: int = 1 << 20) -> None:
        self.drop_bad_checksum = drop_bad_checksum
        self.max_packet = max_packet
        self.stats = KlvStats()
        self._buf = bytearray()
        self._junk = bytearray()  # first bytes of the current run of non-KLV bytes (bounded sample)
        self._junk_n = 0
        self._need = 0  # total size of the pending packet once its key and length are in

    def _skip(self, data: bytes, start: int, stop: int) -> None:
        self._junk_n += stop - start
        room = _JUNK_SAMPLE - len(self._junk)
        if room > 0:
            self._junk += data[start : min(stop, start + room)]

    def _junk_record(self) -> KlvPacket:
        n, raw = self._junk_n, bytes(self._junk)
        self._junk_n, self._junk = 0, bytearray()
        self.stats.bytes_skipped += n
        self.stats.errors += 1
        return KlvPacket(key=b"", set_name="unknown", error=f"{n} bytes without a KLV key", raw=raw)

    def feed(self, data: bytes) -> list[KlvPacket]:
        """Add bytes; return every packet completed by them."""
        if self._buf and len(self._buf) + len(data) < self._need:
            self._buf += data  # still short of the pending packet's known size: no re-parse
            return []
        if not self._buf:
            out, rest = self._parse(bytes(data), final=False)
        else:
            self._buf += data
            out, rest = self._parse(bytes(self._buf), final=False)
        self._buf = bytearray(rest)
        self._need = _packet_size(rest) if rest else 0
        return out

    def flush(self) -> list[KlvPacket]:
        """End of stream: whatever is pending becomes error records."""
        out, _ = self._parse(bytes(self._buf), final=True)
        self._buf = bytearray()
        if self._junk_n:
            out.append(self._junk_record())
        return out

    def _parse(self, data: bytes, final: bool) -> tuple[list[KlvPacket], bytes]:
        out: list[KlvPacket] = []
        pos, end = 0, len(data)
        stats = self.stats
        while pos < end:
            if data[pos] != 0x06 or data[pos : pos + 4] != UL_PREFIX:
                nxt = data.find(UL_PREFIX, pos + 1)
                if nxt >= 0:  # junk up to a key: report the run, go on at the key
                    self._skip(data, pos, nxt)
                    out.append(self._junk_record())
                    pos = nxt
                    continue
                keep = 0 if final else min(3, end - pos)  # a key prefix may straddle the boundary
                while keep and data[end - keep :] != UL_PREFIX[:keep]:
                    keep -= 1
                self._skip(data, pos, end - keep)
                pos = end - keep
                if self._junk_n > self.max_packet:  # bounded: report long runs without waiting
                    out.append(self._junk_record())
                break
            pkt, npos = _read_packet(data, pos, end, final, self.max_packet)
            if pkt is None:
                break
            if self._junk_n:  # junk left from an earlier feed ends at this key
                out.append(self._junk_record())
            pos = npos
            stats.packets[pkt.set_name] += 1
            if pkt.error is not None:
                stats.errors += 1
            if pkt.checksum_ok is False:
                stats.checksum_failures += 1
                if self.drop_bad_checksum:
                    stats.dropped += 1
                    continue
            out.append(pkt)
        rest = data[pos:]
        if len(rest) > self.max_packet + 32:  # bound the pending buffer: give up on this packet
            stats.errors += 1
            out.append(KlvPacket(key=bytes(rest[:16]), set_name="unknown", error="pending packet exceeds limit",
                                 raw=bytes(rest[:16])))
            rest = b""
        return out, bytes(rest)


def _packet_size(data: bytes) -> int:
    """Size of the packet starting at data[0] if its key and BER length are complete, else 0."""
    if len(data) < 17 or data[:4] != UL_PREFIX:
        return 0
    first = data[16]
    if first < 0x80:
        return 17 + first
    nb = first & 0x7F
    if nb == 0 or nb > 8 or len(data) < 17 + nb:
        return 0
    return 17 + nb + int.from_bytes(data[17 : 17 + nb], "big")


def decode(data: bytes, *, drop_bad_checksum: bool = False) -> list[KlvPacket]:
    """Decode every KLV set in a complete buffer (e.g. one PES payload or a .klv file)."""
    dec = KlvDecoder(drop_bad_checksum=drop_bad_checksum)
    return dec.feed(bytes(data)) + dec.flush()


def decode_one(data: bytes) -> KlvPacket:
    """Fast path for a buffer holding exactly one packet (the benchmark's unit)."""
    if type(data) is not bytes:
        data = bytes(data)
    if data[:4] != UL_PREFIX:
        return KlvPacket(key=b"", set_name="unknown", error="no KLV key", raw=bytes(data))
    pkt, _ = _read_packet(data, 0, len(data), True, 1 << 20)
    assert pkt is not None
    return pkt
