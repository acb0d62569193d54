"""Sans-I/O MPEG-TS demultiplexer for the KLV side of STANAG 4609: data PIDs with their timing.

Bytes in (`feed`), events out: `DataUnit` (one KLV access unit with its PTS, or the time it takes
effect when untimed) and `VideoStart` (a video PES header: PTS/DTS and byte position). PyAV
decodes the pictures; this module only reads PSI (PAT/PMT), data PES and video PES headers.

PSI tables are parsed by `kestrel.fmv.psi`. Goal: O(n) in bytes fed, never rescans. Whole
188-byte packets are classified with numpy; only PSI, data packets and video packets that start
a PES reach Python (video payload is never copied into Python objects). Every buffer is bounded
(`max_pes` per PES, one partial packet of carry-over). Damage (lost sync, continuity errors,
transport errors, short PES) is counted in `stats` and skipped; nothing raises.

Carriage handled (MISB ST 1402 / STANAG 4609):
- synchronous KLV: stream type 0x15, PES with PTS, payload = metadata AU cells, each a 5-byte
  header (service id, sequence, flags, 16-bit cell length) then KLV;
- asynchronous KLV: stream type 0x06 with a 'KLVA' registration descriptor (or a payload that
  starts with a SMPTE universal key), PTS optional.

Untimed rule: an asynchronous KLV unit without PTS takes effect at the PTS of the first video
PES that starts after it in byte order, i.e. it applies from the next frame sent (and decoded)
after it arrived, and to every frame presented after that one. Units left at the end of the
stream (no video PES after them) take effect after the last frame (`at` is None).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kestrel.fmv.psi import PsiParser, Stream

PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF
UL_PREFIX = b"\x06\x0e\x2b\x34"
CLOCK = 90_000  # PTS ticks per second
_WRAP = 1 << 33

_NO_OPTIONAL_HEADER = {0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF}


@dataclass(slots=True)
class DataUnit:
    pid: int
    pts: int | None  # 90 kHz ticks (33-bit unwrapped), None = carried without PTS
    at: int | None  # ticks at which it takes effect (pts, or the untimed rule); None = after the end
    payload: bytes  # KLV bytes (AU cell headers removed)
    pos: int  # byte offset of the TS packet that started its PES
    sync: bool


@dataclass(slots=True)
class VideoStart:
    pid: int
    pts: int | None
    dts: int | None
    pos: int


@dataclass(slots=True)
class TsStats:
    packets: int = 0
    bytes_skipped: int = 0  # lost sync: bytes thrown away while searching for 0x47
    transport_errors: int = 0
    cc_errors: int = 0
    bad_pes: int = 0  # data PES dropped: cut by a continuity error, oversized, or malformed
    crc_errors: int = 0
    partial_tail: int = 0  # bytes of an incomplete last packet at close()
    cut_pes: int = 0  # data PES still short of its declared length at close() (cut-off input)


@dataclass(slots=True)
class _Pes:
    pos: int
    data: bytearray = field(default_factory=bytearray)
    broken: bool = False
    last: int = 0  # byte offset of its latest TS packet (untimed rule)


Event = DataUnit | VideoStart


def _ts(b: bytes, i: int) -> int:
    return ((b[i] >> 1) & 7) << 30 | b[i + 1] << 22 | (b[i + 2] >> 1) << 15 | b[i + 3] << 7 | b[i + 4] >> 1


def packet_header(pkt: bytes | bytearray | memoryview) -> tuple[int, bool, int, int]:
    """(PID, payload-unit start, adaptation_field_control, payload offset) of one 188-byte TS packet.

    The offset skips the adaptation field when there is one (it may exceed 188 in a damaged packet:
    the caller checks)."""
    afc = (pkt[3] >> 4) & 3
    return ((pkt[1] & 0x1F) << 8) | pkt[2], bool(pkt[1] & 0x40), afc, (5 + pkt[4]) if afc & 2 else 4


def parse_pes_header(data: bytes) -> tuple[int | None, int | None, int] | None:
    """(pts, dts, payload offset) of a PES packet start, or None if it is not one."""
    if len(data) < 6 or data[0] != 0 or data[1] != 0 or data[2] != 1:
        return None
    if data[3] in _NO_OPTIONAL_HEADER:
        return None, None, 6
    if len(data) < 9 or (data[6] & 0xC0) != 0x80:
        return None, None, 6  # MPEG-1 style / malformed: no timing we can trust
    flags, hlen = data[7], data[8]
    pts = dts = None
    if flags & 0x80 and len(data) >= 14:
        pts = _ts(data, 9)
        if flags & 0x40 and len(data) >= 19:
            dts = _ts(data, 14)
    return pts, dts, 9 + hlen


def split_au_cells(payload: bytes) -> list[bytes]:
    """Metadata AU cells (ST 1402 synchronous carriage) -> their KLV bytes. Lenient: a payload
    that already starts with a universal key is taken as bare KLV; a bad cell length ends the walk
    with the remainder kept."""
    if payload[:4] == UL_PREFIX:
        return [payload]
    cells: list[bytes] = []
    i = 0
    while i + 5 <= len(payload):
        n = int.from_bytes(payload[i + 3 : i + 5], "big")
        body = payload[i + 5 : i + 5 + n]
        if n == 0 or len(body) < n:
            if body:
                cells.append(bytes(body))
            break
        cells.append(bytes(body))
        i += 5 + n
    return cells


class TsDemuxer:
    """Streaming demuxer; `feed(bytes) -> events`, `close() -> events` at end of input."""

    def __init__(self, max_pes: int = 4 << 20, history: int = 256) -> None:
        self.max_pes = max_pes
        self.stats = TsStats()
        self.origin: int | None = None  # ticks of the first video PES (the time origin)
        self.last_ticks: int | None = None  # largest timestamp seen so far (watermark)
        self._buf = bytearray()
        self._pos = 0  # absolute byte offset of _buf[0]
        self.psi = PsiParser()
        self.streams = self.psi.streams  # the same dict, kept current by `psi`
        self._video_pids: np.ndarray = np.zeros(0, dtype=np.int32)
        self._pes: dict[int, _Pes] = {}
        self._cc: dict[int, int] = {}
        self._ref: int | None = None  # unwrap reference
        self._untimed: list[DataUnit] = []  # waiting for the next video PES
        self._recent_video: deque[tuple[int, int]] = deque(maxlen=history)  # (pos, effective ticks)

    # -- public -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        self._buf += data
        self._drain(out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        self._drain(out)
        self.stats.partial_tail = len(self._buf)
        self._pos += len(self._buf)
        self._buf.clear()
        for pid in list(self._pes):
            pes = self._pes[pid]
            declared = int.from_bytes(pes.data[4:6], "big") if len(pes.data) >= 6 else 0
            if len(pes.data) < 6 or (declared and len(pes.data) < 6 + declared):
                self.stats.cut_pes += 1
            self._finish(pid, out, final=True)
        out.extend(self._untimed)  # no later frame: `at` stays None
        self._untimed = []
        return out

    def seconds(self, ticks: int | None) -> float | None:
        """Ticks -> seconds since the first video PES (or since the first timestamp seen)."""
        if ticks is None:
            return None
        return (ticks - (self.origin if self.origin is not None else self._ref or 0)) / CLOCK

    @property
    def position(self) -> int:
        return self._pos

    # -- packet level -------------------------------------------------------------------------
    def _drain(self, out: list[Event]) -> None:
        buf = self._buf
        while len(buf) >= PACKET:
            if buf[0] != SYNC or (len(buf) >= 2 * PACKET and buf[PACKET] != SYNC):
                if not self._resync():
                    return
                continue
            n = len(buf) // PACKET
            arr = np.frombuffer(buf, dtype=np.uint8, count=n * PACKET).reshape(n, PACKET)
            bad = np.flatnonzero(arr[:, 0] != SYNC)
            k = int(bad[0]) if bad.size else n
            rows = arr[:k]
            pids = ((rows[:, 1].astype(np.int32) & 0x1F) << 8) | rows[:, 2]
            if self._video_pids.size:
                isvid = np.isin(pids, self._video_pids)
                keep = (~isvid & (pids != NULL_PID)) | (isvid & ((rows[:, 1] & 0x40) != 0))
                idx = np.flatnonzero(keep)
            else:
                idx = np.flatnonzero(pids != NULL_PID)
            del arr, rows  # release the exported buffer before `buf` is resized below
            with memoryview(buf) as mv:
                picked = [(i, bytes(mv[i * PACKET : (i + 1) * PACKET])) for i in idx.tolist()]
            base = self._pos
            for i, pkt in picked:
                self._packet(pkt, base + i * PACKET, out)
            self.stats.packets += k
            del buf[: k * PACKET]
            self._pos += k * PACKET

    def _resync(self) -> bool:
        """Drop bytes up to the next 0x47 confirmed by another 0x47 one packet later."""
        buf = self._buf
        i = 1
        while True:
            i = buf.find(b"\x47", i)
            if i < 0:
                i = len(buf)
                break
            if i + PACKET >= len(buf):
                break  # cannot confirm yet; keep from here
            if buf[i + PACKET] == SYNC:
                break
            i += 1
        self.stats.bytes_skipped += i
        del buf[:i]
        self._pos += i
        return len(buf) >= 2 * PACKET or (len(buf) >= PACKET and buf[0] == SYNC)

    def _unwrap(self, t: int) -> int:
        if self._ref is not None:
            t += (self._ref - t + _WRAP // 2) // _WRAP * _WRAP  # nearest to the reference
        self._ref = t
        if self.last_ticks is None or t > self.last_ticks:
            self.last_ticks = t
        return t

    def _packet(self, pkt: bytes, pos: int, out: list[Event]) -> None:
        if pkt[1] & 0x80:
            self.stats.transport_errors += 1
            return
        pid, pusi, afc, off = packet_header(pkt)
        if not afc & 1:
            return
        disc = False
        if afc & 2:
            disc = pkt[4] > 0 and bool(pkt[5] & 0x80)
            if off > PACKET:
                self.stats.transport_errors += 1
                return
        payload = pkt[off:]
        if pid == 0 or pid in self.psi.pmt_pids:
            if self.psi.feed(pid, pusi, payload):
                vids = [p for p, s in self.streams.items() if s.kind == "video"]
                self._video_pids = np.array(sorted(vids), dtype=np.int32)
            self.stats.crc_errors = self.psi.crc_errors
            return
        st = self.streams.get(pid)
        if st is None:
            return
        if st.kind == "video":
            if pusi:
                self._video_start(st, payload, pos, out)
            return
        if st.kind not in ("klv", "private"):
            return
        cc = pkt[3] & 0x0F
        last = self._cc.get(pid)
        self._cc[pid] = cc
        if last is not None and not disc:
            if cc == last:
                return  # duplicate packet
            if cc != (last + 1) & 0x0F:
                self.stats.cc_errors += 1
                if pid in self._pes:
                    self._pes[pid].broken = True
        if pusi:
            self._finish(pid, out, final=True)
            self._pes[pid] = _Pes(pos)
        pes = self._pes.get(pid)
        if pes is None:
            return  # continuation without a start: nothing to attach it to
        if len(pes.data) + len(payload) > self.max_pes:
            self.stats.bad_pes += 1
            del self._pes[pid]
            return
        pes.data += payload
        pes.last = pos
        self._finish(pid, out, final=False)

    def _video_start(self, st: Stream, payload: bytes, pos: int, out: list[Event]) -> None:
        hdr = parse_pes_header(payload)
        if hdr is None:
            return
        pts = self._unwrap(hdr[0]) if hdr[0] is not None else None
        dts = self._unwrap(hdr[1]) if hdr[1] is not None else None
        if self.origin is None and pts is not None:
            self.origin = pts
        st.units += 1
        at = pts if pts is not None else dts
        if at is not None:
            self._recent_video.append((pos, at))
            for unit in self._untimed:
                unit.at = at
            out.extend(self._untimed)
            self._untimed = []
        out.append(VideoStart(st.pid, pts, dts, pos))

    def _finish(self, pid: int, out: list[Event], final: bool) -> None:
        """Emit the PES of `pid` if complete (declared length reached, or `final`)."""
        pes = self._pes.get(pid)
        if pes is None:
            return
        data = pes.data
        declared = int.from_bytes(data[4:6], "big") if len(data) >= 6 else 0
        complete = declared and len(data) >= 6 + declared
        if not complete and not final:
            return
        del self._pes[pid]
        if pes.broken or (declared and len(data) < 6 + declared):
            self.stats.bad_pes += 1
            return
        if declared:
            data = data[: 6 + declared]
        hdr = parse_pes_header(bytes(data))
        if hdr is None:
            self.stats.bad_pes += 1
            return
        st = self.streams[pid]
        body = bytes(data[hdr[2] :])
        if st.kind == "private":
            if body[:4] != UL_PREFIX:
                return  # a private stream that is not KLV: ignore quietly
            st.kind, st.codec = "klv", "klv"
        pts = self._unwrap(hdr[0]) if hdr[0] is not None else None
        cells = split_au_cells(body) if st.sync else [body]
        for cell in cells:
            st.units += 1
            unit = DataUnit(pid, pts, pts, cell, pes.pos, st.sync)
            if pts is None:
                # a PES without declared length completes only at the PID's next start: stamp it
                # with the first video PES after its last byte, if that one went by meanwhile
                after = [at for vpos, at in self._recent_video if vpos > pes.last]
                if after:
                    unit.at = after[0]
                    out.append(unit)
                else:
                    self._untimed.append(unit)
            else:
                out.append(unit)
