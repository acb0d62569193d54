"""Streaming multipart/form-data parser (RFC 7578), sans-I/O: bytes in, events out.

ATAK uploads a data package as one part named `assetfile` (browsers: `resource`); the part can be
hundreds of MB, so it is never held in memory: `feed()` returns the part's bytes as they come and
keeps back at most one delimiter's length. Worst case per `feed()`: O(len(data) + len(boundary))
time, O(len(boundary) + MAX_HEADER) memory. Malformed input raises `MultipartError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER = 8 * 1024  # bytes of headers per part
MAX_PARTS = 32


class MultipartError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^;\s"]{1,70}))', re.I)
_PARAM = re.compile(r';\s*([A-Za-z*]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def boundary_of(content_type: str | None) -> str:
    """The boundary of a `multipart/form-data` Content-Type; MultipartError otherwise."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("not multipart/form-data (send the file as part 'assetfile')")
    m = _BOUNDARY.search(content_type)
    if not m:
        raise MultipartError("multipart/form-data without a boundary")
    return m.group(1) or m.group(2)


def _disposition(value: str) -> tuple[str, str | None]:
    params: dict[str, str] = {}
    for m in _PARAM.finditer(value):
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    name = params.get("name")
    if not value.lower().startswith("form-data") or name is None:
        raise MultipartError("part without Content-Disposition: form-data; name=…")
    return name.replace('\\"', '"'), params.get("filename")


class MultipartParser:
    def __init__(self, boundary: str) -> None:
        self._sep = b"\r\n--" + boundary.encode("latin-1")
        self._buf = bytearray(b"\r\n")  # so the first delimiter looks like every other one
        self._state = "preamble"  # preamble | after | headers | data | done
        self.parts = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[Event]:
        if self._state == "done":
            return []  # epilogue: ignored
        self._buf += data
        out: list[Event] = []
        buf, sep = self._buf, self._sep
        while True:
            st = self._state
            if st in ("preamble", "data"):
                i = buf.find(sep)
                if i < 0:
                    keep = len(sep) - 1
                    if st == "data" and len(buf) > keep:
                        out.append(PartData(bytes(buf[: len(buf) - keep])))
                        del buf[: len(buf) - keep]
                    elif st == "preamble" and len(buf) > MAX_HEADER + keep:
                        raise MultipartError("no multipart delimiter where the body starts")
                    return out
                if st == "data":
                    if i:
                        out.append(PartData(bytes(buf[:i])))
                    out.append(PartEnd())
                del buf[: i + len(sep)]
                self._state = "after"
            elif st == "after":
                if len(buf) < 2:
                    return out
                if buf[:2] == b"--":
                    self._state = "done"
                    buf.clear()
                    return out
                j = buf.find(b"\r\n")
                if j < 0:
                    if len(buf) > 64:
                        raise MultipartError("garbage after a multipart delimiter")
                    return out
                if buf[:j].strip(b" \t"):
                    raise MultipartError("garbage after a multipart delimiter")
                del buf[: j + 2]
                self._state = "headers"
            elif st == "headers":
                j = buf.find(b"\r\n\r\n")
                if buf.startswith(b"\r\n"):
                    j = -2  # a part with no headers at all
                if j == -1:
                    if len(buf) > MAX_HEADER:
                        raise MultipartError("multipart part headers too large")
                    return out
                head = bytes(buf[:j]) if j >= 0 else b""
                del buf[: j + 4 if j >= 0 else 2]
                self.parts += 1
                if self.parts > MAX_PARTS:
                    raise MultipartError(f"more than {MAX_PARTS} multipart parts")
                out.append(self._start(head))
                self._state = "data"

    def end(self) -> None:
        """The body ended: it must have closed the last part."""
        if self._state != "done":
            raise MultipartError("multipart body ended before its closing delimiter")

    @staticmethod
    def _start(head: bytes) -> PartStart:
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        name, filename = _disposition(headers.get("content-disposition", ""))
        return PartStart(name, filename, headers.get("content-type"))
