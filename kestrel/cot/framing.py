"""Stream framers: split a TCP byte stream into whole messages, sans-I/O.

`XmlFramer`: CoT XML streams are split right after each `</event>` (the TAK "Traditional Protocol" rule),
so a frame may carry a `<?xml ...?>` prolog, whitespace and (first frame) an `<auth>...</auth>` element
before the `<event>`; `split_auth` peels that off. `ProtoFramer`: TAK protocol streams,
`0xBF <varint length> <payload>`, whitespace between frames tolerated.
Both: O(n) in bytes received — a search resumes where the previous one stopped (never rescans), consumed
bytes are dropped from the front of the buffer (O(1) amortized for bytearray). A pending message longer
than `cap` bytes, a bad magic byte or a bad length varint raise CotError: the stream cannot be resynced,
the caller closes the connection. Memory: at most cap + the last chunk fed.
"""

from __future__ import annotations

from kestrel.cot.errors import CotError
from kestrel.cot.protowire import try_varint

_END = b"</event>"
_WS = b" \t\r\n"


class XmlFramer:
    """Feed bytes, pull complete `...</event>` frames."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._scan = 0  # no `</event>` starts before this offset
        self.scanned = 0  # bytes examined by searches so far: stays O(bytes fed), never O(n^2)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None until more bytes arrive. CotError: over the cap (fatal)."""
        buf = self._buf
        i = buf.find(_END, self._scan)
        self.scanned += (len(buf) if i < 0 else i + len(_END)) - self._scan
        if i < 0:
            self._scan = max(0, len(buf) - len(_END) + 1)
            if len(buf) > self.cap and buf.strip(_WS):
                raise CotError(f"no </event> within {self.cap} bytes (cap exceeded)")
            if len(buf) > self.cap:  # only whitespace: drop it
                buf.clear()
                self._scan = 0
            return None
        end = i + len(_END)
        if end > self.cap:
            raise CotError(f"event of {end} bytes exceeds the {self.cap}-byte cap")
        with memoryview(buf) as mv:
            frame = bytes(mv[:end])  # one copy (a bytearray slice would be a second)
        del buf[:end]
        self._scan = 0
        return frame

    def tak_frame_next(self) -> bool:
        """True when the next pending message starts with 0xBF: a client sending TAK protocol stream
        frames without negotiating (pytak with TAK_PROTO=1 does). 0xBF can never start XML.
        Leading whitespace is dropped here, so a whitespace flood is never looked at twice."""
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n and buf[i] in _WS:
            i += 1
        if i:
            del buf[:i]
            self._scan = max(0, self._scan - i)
            self.scanned += i
        return i < n and buf[0] == 0xBF

    def next_tak_frame(self) -> bytes | None:
        """Take one TAK stream frame from the front (see `tak_frame_next`); CotError as ProtoFramer."""
        self._scan = 0
        return take_tak_frame(self._buf, self.cap)

    def take_rest(self) -> bytes:
        """Bytes received but not yet framed (used when the stream switches to TAK protocol)."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return rest

    @property
    def pending(self) -> int:
        return len(self._buf)


def split_auth(frame: bytes) -> tuple[bool, bytes]:
    """(had_auth, rest): a leading `<auth>...</auth>` (or `<auth .../>`) is removed. The auth content is
    never returned (it may hold a password; Kestrel authenticates with client certificates)."""
    head = frame.lstrip(_WS)
    if not head.startswith(b"<auth"):
        return False, frame
    close = head.find(b"</auth>")
    if close >= 0:
        return True, head[close + len(b"</auth>") :]
    gt = head.find(b">")
    if gt > 0 and head[gt - 1 : gt] == b"/":
        return True, head[gt + 1 :]
    return False, frame  # malformed: let the XML parser report it


def take_tak_frame(buf: bytearray, cap: int) -> bytes | None:
    """Remove and return one `0xBF <varint len> <payload>` payload from the front of `buf` (leading
    whitespace skipped); None until complete. CotError: bad magic, bad varint, length over cap."""
    i = 0
    n = len(buf)
    while i < n and buf[i] in _WS:
        i += 1
    if i:
        del buf[:i]
        n -= i
    if n == 0:
        return None
    if buf[0] != 0xBF:
        raise CotError(f"TAK stream lost framing: expected 0xBF, got 0x{buf[0]:02x}")
    got = try_varint(buf, 1)
    if got is None:
        return None
    length, pos = got
    if length > cap:
        raise CotError(f"TAK message of {length} bytes exceeds the {cap}-byte cap")
    if n - pos < length:
        return None
    frame = bytes(buf[pos : pos + length])
    del buf[: pos + length]
    return frame


class ProtoFramer:
    """Feed bytes, pull complete TAK protocol stream payloads (header removed)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next payload, or None until more bytes arrive. CotError: framing lost (fatal)."""
        return take_tak_frame(self._buf, self.cap)

    @property
    def pending(self) -> int:
        return len(self._buf)
