"""Rewrite asynchronous KLV carriage into synchronous carriage (MISB ST 1402), bytes to bytes.

FFmpeg (through PyAV) writes KLV as stream type 0x06 PES with PTS; it can write stream type 0x15
only when a codec profile is set that PyAV does not expose. This pure function turns such a
stream into synchronous carriage: the PMT entry becomes stream type 0x15 with the KLVA
registration, metadata and metadata-STD descriptors, and every KLV PES gets a PES header with PTS
and a payload of one metadata AU cell (5-byte header + the KLV). Other packets pass unchanged; a
rebuilt PES is placed where the original one ended. O(n) in bytes, one pass after a PSI scan.
"""

from __future__ import annotations

from kestrel.fmv.psi import crc32_mpeg
from kestrel.fmv.ts import PACKET, SYNC, TsDemuxer, packet_header, parse_pes_header

# Descriptors for a synchronous KLV ES (registration 'KLVA', metadata_descriptor, metadata_STD)
KLVA_REGISTRATION = bytes.fromhex("05044b4c5641")
METADATA_DESCRIPTOR = bytes.fromhex("26090100ff4b4c5641000f")
METADATA_STD_DESCRIPTOR = bytes.fromhex("2709c00000c00000c00000")
AU_FLAGS = 0xDF  # fragmentation '11' (whole AU), decoder config 0, random access 1, reserved '1111'


def _pts_bytes(pts: int) -> bytes:
    return bytes([
        0x21 | ((pts >> 29) & 0x0E), (pts >> 22) & 0xFF, 0x01 | ((pts >> 14) & 0xFE), (pts >> 7) & 0xFF,
        0x01 | ((pts << 1) & 0xFE),
    ])


def sync_pes(klv: bytes, pts: int, seq: int, service_id: int = 0) -> bytes:
    """One PES (stream id 0xFC, PTS) holding one metadata AU cell."""
    cell = bytes([service_id, seq & 0xFF, AU_FLAGS]) + len(klv).to_bytes(2, "big") + klv
    body = bytes([0x84, 0x80, 5]) + _pts_bytes(pts & ((1 << 33) - 1)) + cell
    return b"\x00\x00\x01\xfc" + len(body).to_bytes(2, "big") + body


def packetize(pes: bytes, pid: int, cc: int) -> tuple[list[bytes], int]:
    """TS packets carrying `pes` (adaptation-field stuffing in the last); returns (packets, next cc)."""
    out = []
    pos = 0
    first = True
    while pos < len(pes):
        chunk = pes[pos : pos + 184]
        pos += len(chunk)
        stuff = 184 - len(chunk)
        head = bytes([SYNC, (0x40 if first else 0) | (pid >> 8) & 0x1F, pid & 0xFF])
        if stuff:
            af = b"\x00" if stuff == 1 else bytes([stuff - 1, 0x00]) + b"\xff" * (stuff - 2)
            out.append(head + bytes([0x30 | cc]) + af + chunk)
        else:
            out.append(head + bytes([0x10 | cc]) + chunk)
        cc = (cc + 1) & 0x0F
        first = False
    return out, cc


def _rewrite_pmt(section: bytes, pids: set[int]) -> bytes:
    pil = ((section[10] & 0x0F) << 8) | section[11]
    head = bytearray(section[: 12 + pil])
    i, end = 12 + pil, len(section) - 4
    es = bytearray()
    while i + 5 <= end:
        stype, epid = section[i], ((section[i + 1] & 0x1F) << 8) | section[i + 2]
        il = ((section[i + 3] & 0x0F) << 8) | section[i + 4]
        desc = section[i + 5 : i + 5 + il]
        if epid in pids:
            stype, desc = 0x15, KLVA_REGISTRATION + METADATA_DESCRIPTOR + METADATA_STD_DESCRIPTOR
        es += bytes([stype, section[i + 1], section[i + 2], 0xF0 | (len(desc) >> 8), len(desc) & 0xFF]) + desc
        i += 5 + il
    body = head + es
    length = len(body) - 3 + 4
    body[1] = (body[1] & 0xF0) | (length >> 8)
    body[2] = length & 0xFF
    return bytes(body) + crc32_mpeg(bytes(body)).to_bytes(4, "big")


def to_synchronous(ts: bytes) -> bytes:
    """Async KLV (0x06 with PTS) -> synchronous carriage, for a clean single-program TS."""
    scan = TsDemuxer()
    scan.feed(ts)
    scan.close()
    klv_pids = {p for p, s in scan.streams.items() if s.kind == "klv" and not s.sync}
    pmt_pids = set(scan.psi.pmt_pids)
    if not klv_pids:
        return ts
    out = bytearray()
    pes: dict[int, bytearray] = {}
    cc = {p: 0 for p in klv_pids}
    seq = {p: 0 for p in klv_pids}

    def flush(pid: int) -> None:
        data = bytes(pes.pop(pid, b""))
        hdr = parse_pes_header(data)
        if hdr is None or hdr[0] is None:
            return  # untimed or malformed: synchronous carriage needs a PTS; drop it
        pkts, cc[pid] = packetize(sync_pes(data[hdr[2] :], hdr[0], seq[pid]), pid, cc[pid])
        seq[pid] += 1
        for p in pkts:
            out.extend(p)

    for off in range(0, len(ts) - PACKET + 1, PACKET):
        pkt = ts[off : off + PACKET]
        pid, pusi, afc, start = packet_header(pkt)
        if pid in klv_pids:
            if pusi:
                flush(pid)
                pes[pid] = bytearray()
            if pid in pes and afc & 1:
                pes[pid] += pkt[start:]
                data = pes[pid]
                if len(data) >= 6 and len(data) >= 6 + int.from_bytes(data[4:6], "big") > 6:
                    del data[6 + int.from_bytes(data[4:6], "big") :]
                    flush(pid)
            continue
        if pid in pmt_pids and pusi and pkt[4] == 0 and pkt[5] == 0x02:
            afc_ok = afc == 1
            length = ((pkt[6] & 0x0F) << 8) | pkt[7]
            if afc_ok and 3 + length <= PACKET - 5:  # a PMT that fits one packet (ours always does)
                section = _rewrite_pmt(pkt[5 : 5 + 3 + length], klv_pids)
                if len(section) <= PACKET - 5:
                    pkt = pkt[:4] + b"\x00" + section + b"\xff" * (PACKET - 5 - len(section))
        out.extend(pkt)
    for pid in list(pes):
        flush(pid)
    return bytes(out)
