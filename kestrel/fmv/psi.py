"""MPEG-TS program-specific information: PAT and PMT sections -> the stream table (sans-I/O).

Sections may span packets; each is CRC-32 checked, and a section identical to the last one on
its PID is skipped without re-parsing (PSI repeats every ~100 ms). Section buffers are bounded
(4 KiB, the largest PSI section). Stream classification: video by stream type; KLV for stream
type 0x15 (synchronous metadata) or 0x06 with a 'KLVA' registration/metadata descriptor;
0x06 without one is "private" until its payload shows a SMPTE universal key.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_TYPES: dict[int, str] = {
    0x01: "mpeg1video", 0x02: "mpeg2video", 0x10: "mpeg4", 0x1B: "h264", 0x24: "hevc",
    0x33: "vvc", 0x42: "cavs", 0xD1: "dirac", 0xEA: "vc1",
}
MAX_SECTION = 4096


@dataclass(slots=True)
class Stream:
    pid: int
    stream_type: int
    kind: str  # "video" | "klv" | "private" (0x06 not yet known to be KLV) | "other"
    codec: str  # "h264", "klv", ... or "0x.." for unknown stream types
    sync: bool = False  # KLV carried in metadata AU cells (stream type 0x15)
    units: int = 0  # access units emitted (KLV) or PES headers seen (video)


def _crc32_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc32_table()


def crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 as used by PSI sections (0 over a section including its CRC = valid)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ b) & 0xFF]
    return crc


class PsiParser:
    """`feed(pid, pusi, payload) -> changed` for packets of PID 0 and of the PMT PIDs."""

    def __init__(self) -> None:
        self.streams: dict[int, Stream] = {}
        self.pmt_pids: set[int] = set()
        self.crc_errors = 0
        self._sections: dict[int, bytearray] = {}
        self._last: dict[int, bytes] = {}
        self._changed = False

    def feed(self, pid: int, pusi: bool, payload: bytes) -> bool:
        self._changed = False
        if pusi:
            if not payload:
                return False
            ptr = payload[0]
            sec = self._sections.get(pid)
            if sec is not None and ptr:  # tail of the previous section
                sec += payload[1 : 1 + ptr]
                self._section_done(pid)
            self._sections[pid] = bytearray(payload[1 + ptr :])
        elif pid in self._sections:
            self._sections[pid] += payload
        self._section_done(pid)
        return self._changed

    def _section_done(self, pid: int) -> None:
        sec = self._sections.get(pid)
        if sec is None or len(sec) < 3:
            return
        if sec[0] == 0xFF:  # stuffing
            del self._sections[pid]
            return
        length = ((sec[1] & 0x0F) << 8) | sec[2]
        if len(sec) < 3 + length:
            if len(sec) > MAX_SECTION:
                del self._sections[pid]
            return
        section = bytes(sec[: 3 + length])
        del self._sections[pid]
        if self._last.get(pid) == section:
            return
        if length < 9 or crc32_mpeg(section) != 0:
            self.crc_errors += 1
            return
        self._last[pid] = section
        if section[0] == 0x00 and pid == 0:
            self._pat(section)
        elif section[0] == 0x02:
            self._pmt(section)

    def _pat(self, sec: bytes) -> None:
        pmts = set()
        for i in range(8, len(sec) - 4, 4):
            program = int.from_bytes(sec[i : i + 2], "big")
            if program:
                pmts.add(((sec[i + 2] & 0x1F) << 8) | sec[i + 3])
        self.pmt_pids = pmts

    def _pmt(self, sec: bytes) -> None:
        pil = ((sec[10] & 0x0F) << 8) | sec[11]
        i = 12 + pil
        end = len(sec) - 4
        while i + 5 <= end:
            stype = sec[i]
            pid = ((sec[i + 1] & 0x1F) << 8) | sec[i + 2]
            il = ((sec[i + 3] & 0x0F) << 8) | sec[i + 4]
            desc = sec[i + 5 : i + 5 + il]
            i += 5 + il
            old = self.streams.get(pid)
            if old is not None and old.stream_type == stype:
                continue
            self.streams[pid] = classify(pid, stype, desc)
            self._changed = True


def descriptors(desc: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i + 2 <= len(desc):
        tag, n = desc[i], desc[i + 1]
        out.append((tag, desc[i + 2 : i + 2 + n]))
        i += 2 + n
    return out


def classify(pid: int, stype: int, desc: bytes) -> Stream:
    if stype in VIDEO_TYPES:
        return Stream(pid, stype, "video", VIDEO_TYPES[stype])
    klva = any(
        (tag == 0x05 and body[:4] == b"KLVA") or (tag == 0x26 and b"KLVA" in body[:8])
        for tag, body in descriptors(desc)
    )
    if stype == 0x15:
        return Stream(pid, stype, "klv", "klv", sync=True)
    if stype == 0x06:
        return Stream(pid, stype, "klv" if klva else "private", "klv" if klva else "0x06")
    return Stream(pid, stype, "other", f"0x{stype:02x}")
