"""Byte sources for ingest: files, file objects and live `udp://host:port` transport streams.

A source is anything with `read(n) -> bytes` (b"" = end). The UDP source is a thin I/O shell:
one receiver thread appends datagrams to a bounded buffer (oldest bytes dropped and counted when
the consumer falls behind, so the network side never blocks); `read` waits for data and reports
end of stream after `idle_timeout` seconds without a datagram (0 = wait forever); `timed_out`
then says the stream ended that way. A URL that cannot be listened on (unknown host, port out of
range, an address of another machine) is an `FmvInputError`, one line naming the URL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import threading
from collections import deque
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlparse

from kestrel.fmv.frame import FmvInputError


class ByteSource(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


DEFAULT_IDLE_TIMEOUT = 60.0  # seconds without a datagram before a live stream counts as ended


def resolve_udp(url: str) -> tuple[str, int]:
    """(IPv4 address, port) of `udp://HOST:PORT` (HOST a name, an address, or empty for all local
    addresses); FmvInputError with a one-line reason otherwise. Resolves names (may ask DNS)."""
    u = urlparse(url)
    try:
        port = u.port
    except ValueError:  # urllib: "Port out of range 0-65535" / "Port could not be cast to integer"
        raise FmvInputError(f"{url}: bad port (expected udp://HOST:PORT, PORT 0-65535)") from None
    if u.scheme != "udp" or port is None:
        raise FmvInputError(f"{url}: expected udp://HOST:PORT")
    host = u.hostname or ""
    if host in ("", "0.0.0.0"):
        return "", port
    try:
        return str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]), port
    except (OSError, UnicodeError) as exc:
        raise FmvInputError(f"{url}: cannot resolve host {host!r} ({getattr(exc, 'strerror', None) or exc})") from None


class UdpSource:
    """Receive a TS over UDP (unicast or multicast). `port` 0 binds an OS-chosen port; `host` ""
    listens on every local address; a multicast group is joined."""

    def __init__(
        self, host: str, port: int, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_buffer: int = 64 << 20,
        name: str | None = None,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.timed_out = False
        self.name = name or f"udp://{host}:{port}"
        self.max_buffer = max_buffer
        self.dropped_bytes = 0
        self.received_bytes = 0
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._cv = threading.Condition()
        self._closed = False
        if not 0 <= port <= 65535:
            raise FmvInputError(f"{self.name}: bad port {port} (0-65535)")
        try:
            multicast = bool(host) and socket.inet_aton(host)[0] in range(224, 240)
        except OSError:
            raise FmvInputError(f"{self.name}: {host!r} is not an IPv4 address (use udp://HOST:PORT)") from None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind(("" if multicast else host, port))
            if multicast:
                mreq = struct.pack("4s4s", socket.inet_aton(host), socket.inet_aton("0.0.0.0"))
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            self._sock.close()
            where = f"{host or '0.0.0.0'}:{port}"
            raise FmvInputError(
                f"{self.name}: cannot listen on {where} ({exc.strerror or exc}); use an address of this "
                "machine, udp://0.0.0.0:PORT for all of them, or a multicast group"
            ) from None
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()
        self._thread = threading.Thread(target=self._run, name="kestrel-udp-ingest", daemon=True)
        self._thread.start()

    @classmethod
    def from_url(cls, url: str, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_buffer: int = 64 << 20) -> UdpSource:
        host, port = resolve_udp(url)
        return cls(host, port, idle_timeout=idle_timeout, max_buffer=max_buffer, name=url)

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            with self._cv:
                self.received_bytes += len(data)
                self._chunks.append(data)
                self._size += len(data)
                while self._size > self.max_buffer and len(self._chunks) > 1:
                    old = self._chunks.popleft()
                    self._size -= len(old)
                    self.dropped_bytes += len(old)
                self._cv.notify_all()  # the reader and any `wait_received` caller
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def wait_received(self, nbytes: int, timeout: float | None = None) -> bool:
        """Block until `nbytes` in total have arrived (or the source is closed); False on timeout.

        Lets a sender pace itself on what arrived (flow control for tests and tools on loopback)."""
        with self._cv:
            return self._cv.wait_for(lambda: self.received_bytes >= nbytes or self._closed, timeout)

    def read(self, n: int = -1, /) -> bytes:
        with self._cv:
            if not self._chunks and not self._closed:
                wait = self.idle_timeout if self.idle_timeout > 0 else None
                if not self._cv.wait_for(lambda: bool(self._chunks) or self._closed, timeout=wait):
                    self.timed_out = True
            if not self._chunks:
                return b""  # idle for idle_timeout, or closed: end of stream
            out = bytearray()
            while self._chunks and (n < 0 or len(out) < n):
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                if n >= 0 and len(out) + len(chunk) > n:
                    keep = n - len(out)
                    out += chunk[:keep]
                    self._chunks.appendleft(chunk[keep:])
                    self._size += len(chunk) - keep
                else:
                    out += chunk
            return bytes(out)

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.close()
        finally:
            self._thread.join(timeout=2.0)


def open_source(source: str | Path | IO[bytes], *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> tuple[ByteSource, str, bool]:
    """(byte source, display name, owned) for a path, a `udp://` URL or a binary file object."""
    if hasattr(source, "read"):
        return source, getattr(source, "name", "<stream>"), False  # type: ignore[return-value]
    name = str(source)
    if name.startswith("udp://"):
        return UdpSource.from_url(name, idle_timeout=idle_timeout), name, True
    if "://" in name:
        raise FmvInputError(f"{name}: only files and udp:// URLs are supported")
    with contextlib.suppress(OSError):  # a missing file is reported by open() below
        mode = os.stat(name).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode) or stat.S_ISDIR(mode):
            # open() of a FIFO without a writer blocks for ever; a directory cannot be read.
            kind = "a directory" if stat.S_ISDIR(mode) else "a pipe, FIFO or device"
            raise FmvInputError(f"{name}: is {kind}, not a video file; give a .ts file or a udp:// URL")
    try:
        return open(name, "rb", buffering=1 << 20), name, True  # noqa: SIM115 - closed by owner
    except OSError as exc:
        raise FmvInputError(f"{name}: {exc.strerror or exc}") from exc
