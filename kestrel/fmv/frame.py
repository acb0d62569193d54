"""`Frame`: one decoded video frame with the KLV that applies to it — the record PED consumes.

Time base: `pts` is seconds since the first video PES of the stream (the first frame is ~0.0),
on the 90 kHz MPEG-TS clock, so it is comparable across files, synthetic truth and KLV packets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kestrel.errors import BadInput

if TYPE_CHECKING:  # numpy stays a runtime-lazy import for the CLI
    import numpy as np

    from kestrel.klv.metadata import SensorMetadata
    from kestrel.klv.packet import KlvPacket


class FmvInputError(BadInput):
    """The input is not usable video (not a transport stream, no video, nothing decodable).

    The message names the source and the reason in one line; the CLI turns it into exit code 2.
    """


@dataclass(slots=True)
class Frame:
    index: int  # 0-based, in presentation order
    pts: float  # seconds since the first video PES (see module doc)
    image: np.ndarray  # H x W x 3, uint8, BGR (OpenCV order)
    # Latest sensor geometry at or before `pts` (partial packets merged); None = no KLV yet.
    metadata: SensorMetadata | None = None
    # The KLV packets that became effective since the previous frame (in time order).
    klv: list[KlvPacket] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
