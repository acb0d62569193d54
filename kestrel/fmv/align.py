"""Sans-I/O KLV-to-frame alignment: decoded KLV units in, per-frame metadata out.

The rule (docs/fmv.md): a unit takes effect at its PTS, or, untimed, at the PTS of the next
video PES after it in byte order (`kestrel.fmv.ts`); each frame gets every unit effective at or
before its PTS, merged in time order (arrival order for equal times) into the running
`SensorMetadata`. O(log n) per unit; holds only units no frame has taken yet.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kestrel.fmv.ts import DataUnit, TsDemuxer
from kestrel.klv.metadata import SensorMetadata
from kestrel.klv.packet import KlvPacket

SNIFF = 188 * 8


@dataclass(slots=True)
class KlvStats:
    units: int = 0  # KLV access units (PES payloads / AU cells)
    packets: int = 0  # KLV sets decoded (top level)
    by_set: Counter[str] = field(default_factory=Counter)
    checksum_failures: int = 0
    errors: int = 0  # packets the decoder could not read (error records)
    untimed: int = 0


def _klv_api() -> tuple[Callable[[bytes], list[KlvPacket]], Callable[[KlvPacket], SensorMetadata | None]]:
    from kestrel.klv import decode, to_metadata

    return decode, to_metadata


class KlvTimeline:
    """KLV units in (any order), per-frame metadata out (frames asked in PTS order)."""

    def __init__(self) -> None:
        self._decode, self._to_md = _klv_api()
        self._heap: list[tuple[int, int, list[KlvPacket]]] = []
        self._seq = itertools.count()
        self._late: list[KlvPacket] = []  # untimed units after the last video PES
        self.state: SensorMetadata | None = None
        self.stats = KlvStats()

    def decode_unit(self, unit: DataUnit, demux: TsDemuxer) -> list[KlvPacket]:
        pkts = self._decode(unit.payload)
        t = demux.seconds(unit.pts)
        st = self.stats
        st.units += 1
        st.untimed += unit.pts is None
        for p in pkts:
            p.pts, p.stream = t, unit.pid
            st.packets += 1
            st.by_set[p.set_name] += 1
            st.checksum_failures += p.checksum_ok is False
            st.errors += p.error is not None
        return pkts

    def push(self, unit: DataUnit, demux: TsDemuxer) -> None:
        pkts = self.decode_unit(unit, demux)
        if unit.at is None:
            self._late.extend(pkts)
        else:
            heapq.heappush(self._heap, (unit.at, next(self._seq), pkts))

    def rest(self) -> list[KlvPacket]:
        """Packets that never became effective for a frame (after the last one), in time order."""
        out = [p for _at, _seq, pkts in sorted(self._heap) for p in pkts] + self._late
        self._heap, self._late = [], []
        return out

    def take(self, ticks: int) -> tuple[SensorMetadata | None, list[KlvPacket]]:
        """Every packet effective at or before `ticks`, and the merged metadata state."""
        out: list[KlvPacket] = []
        while self._heap and self._heap[0][0] <= ticks:
            out.extend(heapq.heappop(self._heap)[2])
        for p in out:
            if p.error is not None:
                continue
            md = self._to_md(p)
            if md is not None:
                self.state = md if self.state is None else self.state.merged(md)
        return self.state, out


def looks_like_ts(head: bytes) -> bool:
    """At least three sync bytes one packet apart within the first packets."""
    for i in range(min(len(head), 188)):
        if head[i] == 0x47 and all(head[i + k * 188] == 0x47 for k in range(1, 3) if i + k * 188 < len(head)):
            return len(head) - i > 2 * 188 or len(head) < 3 * 188
    return False
