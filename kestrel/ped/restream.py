"""`kestrel ped run --restream URL`: re-send the source video, KLV and all, while PED reads it.

The MPEG-TS bytes PED reads are forwarded unchanged (no demux, no re-encode: every PID, the
video, the ST 0601 KLV, PCR and tables arrive bit for bit), so ATAK draws the sensor from the KLV
while it plays. `udp://HOST:PORT` (multicast or unicast; `?ttl=N` for multicast) sends 7 TS
packets per datagram as STANAG 4609 streams do. (`srt://` is refused: the FFmpeg inside PyAV has
no SRT protocol.) A file source is paced by its PCR (it plays at its own speed, so a viewer sees real time);
a live source is forwarded as it arrives. Forwarding errors are counted, never fatal to PED.
Worst case memory: one datagram (1316 B) plus one read chunk.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

TS = 188
PER_DATAGRAM = 7 * TS
PCR_HZ = 90_000.0
MAX_LEAD = 2.0  # never sleep longer than this for one PCR step (a PCR jump or wrap)


class RestreamError(ValueError):
    """A bad --restream URL; the message names it."""


def _pcr(pkt: bytes | memoryview) -> int | None:
    """The PCR base (90 kHz) of one TS packet, or None."""
    if pkt[0] != 0x47 or not pkt[3] & 0x20 or pkt[4] < 7 or not pkt[5] & 0x10:
        return None
    b = pkt[6:11]
    return (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)


class Pacer:
    """Sleeps so bytes leave at the pace their PCR says (first PCR = now)."""

    def __init__(self, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self._clock, self._sleep = clock, sleep
        self._t0: float | None = None
        self._p0 = 0
        self._last = 0

    def wait(self, pcr: int) -> None:
        now = self._clock()
        if self._t0 is None or pcr < self._last or (pcr - self._last) / PCR_HZ > MAX_LEAD:
            self._t0, self._p0 = now, pcr  # start, or a discontinuity: re-anchor
        self._last = pcr
        due = self._t0 + (pcr - self._p0) / PCR_HZ
        if due > now:
            self._sleep(due - now)


class _Udp:
    def __init__(self, host: str, port: int, ttl: int) -> None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        self.addr: Any = addr
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if ipaddress.ip_address(self.addr[0]).is_multicast:
                level = socket.IPPROTO_IP if family == socket.AF_INET else socket.IPPROTO_IPV6
                opt = socket.IP_MULTICAST_TTL if family == socket.AF_INET else socket.IPV6_MULTICAST_HOPS
                self.sock.setsockopt(level, opt, ttl)
        except ValueError:
            pass

    def write(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)

    def close(self) -> None:
        self.sock.close()


class Restream:
    """Forwards TS bytes to `url`. `paced`: hold them to their PCR timing (file sources)."""

    def __init__(self, url: str, *, paced: bool) -> None:
        u = urlsplit(url)
        q = parse_qs(u.query)
        try:
            port = u.port
        except ValueError:
            port = None
        if u.scheme == "udp":
            if not u.hostname or not port:
                raise RestreamError(f"--restream {url}: expected udp://HOST:PORT")
            try:
                ttl = int(q.get("ttl", ["1"])[0])
            except ValueError:
                raise RestreamError(f"--restream {url}: ttl must be a number") from None
            self._out: Any = _Udp(u.hostname, port, ttl)
        elif u.scheme == "srt":
            raise RestreamError(f"--restream {url}: srt:// needs FFmpeg built with SRT, which PyAV's is not; use udp://HOST:PORT")
        else:
            raise RestreamError(f"--restream {url}: expected udp://HOST:PORT or srt://HOST:PORT")
        self.url = url
        self._buf = bytearray()
        self._pacer = Pacer() if paced else None
        self.sent = self.errors = 0
        self._owned: Any = None  # a file `tee()` opened

    def tee(self, source: Any) -> TeeSource:
        """`source` (a path or a byte source) as a byte source whose bytes are also re-sent."""
        from kestrel.fmv.live import open_source

        src, _, owned = open_source(source, idle_timeout=0)
        if owned:
            self._owned = src
        return TeeSource(src, self)

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        n = len(buf) - len(buf) % PER_DATAGRAM
        for i in range(0, n, PER_DATAGRAM):
            chunk = bytes(buf[i:i + PER_DATAGRAM])
            if self._pacer is not None:
                for j in range(0, len(chunk) - TS + 1, TS):
                    pcr = _pcr(chunk[j:j + TS])
                    if pcr is not None:
                        self._pacer.wait(pcr)
            self._send(chunk)
        del buf[:n]

    def _send(self, chunk: bytes) -> None:
        try:
            self._out.write(chunk)
            self.sent += len(chunk)
        except OSError:
            self.errors += 1

    def close(self) -> None:
        """Send what is left, close the socket and any file `tee()` opened. Idempotent."""
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()
        self._out.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None


class TeeSource:
    """A byte source for `fmv.ingest.VideoReader` that also feeds `Restream`."""

    def __init__(self, src: Any, restream: Restream) -> None:
        self.src, self.restream = src, restream
        self.name = getattr(src, "name", "<stream>")

    def read(self, n: int = -1, /) -> bytes:
        data = self.src.read(n)
        if data:
            self.restream.feed(data)
        return bytes(data)
