"""The asyncio HTTP/1.1 shell of the Marti API: bytes <-> h11 events <-> `Request`/`Response`.

One task per connection (keep-alive; one request at a time, as ATAK sends them). Bounds, each
costing only the offending connection: request head <= `max_header` bytes and `header_timeout`
seconds; a body is refused with 413 when its declared length is over the route's limit (a small
body for most routes, `max_file` plus multipart overhead for uploads) and cut off when more arrives;
every body read must progress within `body_timeout` (a stalled upload gets 408, its temp file is
removed); idle keep-alive connections close after `idle_timeout`; at most `max_connections` per
listener (more get 503). `Expect: 100-continue` is answered only after the route, the credentials
and the declared length were accepted, so a refused upload is never sent. `Content-Encoding` on a
request is ignored (ATAK's video manager sends `Content-Encoding: UTF-8`, a charset).
Worst case per connection: one read chunk + `max_header` + (small body) in memory; uploads stream
to a temp file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import h11

from kestrel.marti import routes
from kestrel.marti.files import Upload
from kestrel.marti.message import HttpError, Identity, Request, Response, parse_query
from kestrel.marti.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart, boundary_of
from kestrel.server import logs

UPLOAD_PARTS = ("assetfile", "resource")  # ATAK's part name, then browsers' (TAK Server accepts both)
LINGER_SECONDS = 2.0
LINGER_BYTES = 8 << 20
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")

# (listener kind, headers) -> Identity, or HttpError(401/403). May be slow (password hashing).
Authenticate = Callable[[str, dict[str, str], "dict | None", routes.Route], Awaitable[Identity]]


@dataclass(slots=True)
class ShellLimits:
    max_header: int = 16 * 1024
    max_small_body: int = 1 << 20
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0
    max_connections: int = 256
    chunk: int = 256 * 1024  # one read; the stream buffer pauses the socket at 2x this


class UploadSink:
    """A multipart upload streaming into `files.Upload`: only the `assetfile` part is kept."""

    def __init__(self, begin: Callable[[], Upload], content_type: str | None) -> None:
        self._parser = MultipartParser(boundary_of(content_type))  # before any temp file exists
        self.upload = begin()
        self._in_file = False
        self.found = False
        self._other = 0

    def feed(self, data: bytes) -> None:
        for ev in self._parser.feed(data):
            if isinstance(ev, PartStart):
                self._in_file = ev.name in UPLOAD_PARTS and not self.found
                self.found = self.found or self._in_file
            elif isinstance(ev, PartData):
                if self._in_file:
                    self.upload.write(ev.data)
                else:
                    self._other += len(ev.data)
                    if self._other > 64 * 1024:
                        raise HttpError(400, "multipart fields other than the file must be small")
            elif isinstance(ev, PartEnd):
                self._in_file = False

    def finish(self) -> Upload:
        self._parser.end()
        if not self.found:
            raise HttpError(400, "no multipart part named 'assetfile' (or 'resource') with the file")
        self.upload.finish()
        return self.upload


class _Closed(Exception):
    """The peer hung up or stalled: stop serving this connection."""


class HttpShell:
    """Serves one listener's connections. `kind`: "http" | "https" | "enroll"."""

    def __init__(self, kind: str, state: routes.State, authenticate: Authenticate, limits: ShellLimits,
                 max_upload: int) -> None:
        self.kind, self.state, self._auth, self.limits = kind, state, authenticate, limits
        self.max_upload = max_upload
        self.scheme = "http" if kind == "http" else "https"
        self.metrics: Any = None  # the server's Metrics (counters on /metrics), when it has one
        self.active = 0
        self.connections = 0
        self.requests = 0
        self.refused_busy = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.limits.max_connections:
            self.refused_busy += 1
            if self.metrics is not None:
                self.metrics.inc("refused_http_connections")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        self.active += 1
        self.connections += 1
        try:
            await _Conn(self, reader, writer).run()
        except (_Closed, ConnectionError, OSError):
            pass
        except Exception as exc:  # a bug must cost one connection, not the server
            logs.warning("http.internal_error", listener=self.kind, reason=repr(exc)[:200])
        finally:
            self.active -= 1
            writer.close()


class _Conn:
    def __init__(self, shell: HttpShell, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.s, self.r, self.w = shell, reader, writer
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=shell.limits.max_header)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.peercert = writer.get_extra_info("peercert")
        sock = writer.get_extra_info("sockname")
        self.local = f"{sock[0]}:{sock[1]}" if isinstance(sock, tuple) else "localhost"

    async def _next(self, timeout: float) -> object:
        while True:
            try:
                ev = self.h.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(exc.error_status_hint, f"bad request ({exc})") from None
            if ev is not h11.NEED_DATA:
                return ev
            try:
                data = await asyncio.wait_for(self.r.read(self.s.limits.chunk), timeout)
            except TimeoutError:
                raise TimeoutError from None
            self.h.receive_data(data)

    async def run(self) -> None:
        first = True
        while True:
            timeout = self.s.limits.header_timeout if first else self.s.limits.idle_timeout
            first = False
            try:
                ev = await self._next(timeout)
            except TimeoutError:
                return  # idle or stalled head: just close
            except HttpError as exc:
                await self._send(exc.response(), close=True)
                return
            if isinstance(ev, h11.ConnectionClosed):
                return
            if not isinstance(ev, h11.Request):
                return
            keep = await self._request(ev)
            if not keep:
                await self._linger()
                return
            if self.h.our_state is not h11.DONE or self.h.their_state is not h11.DONE:
                return
            self.h.start_next_cycle()

    async def _linger(self) -> None:
        """We answered before reading the whole body (413, 408, 401…): half-close and discard what
        the client still sends for a moment, so it reads our answer instead of a reset (closing with
        unread data makes the kernel send RST). Bounded: LINGER_SECONDS and LINGER_BYTES."""
        try:
            if self.w.can_write_eof():
                self.w.write_eof()
        except (OSError, RuntimeError):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        left = LINGER_BYTES
        while left > 0:
            try:
                data = await asyncio.wait_for(self.r.read(min(left, self.s.limits.chunk)), deadline - loop.time())
            except (TimeoutError, OSError, ValueError):
                return
            if not data:
                return
            left -= len(data)

    async def _request(self, ev: h11.Request) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        t0 = time.monotonic()
        s = self.s
        s.requests += 1
        method = ev.method.decode("ascii", "replace")
        target = ev.target.decode("ascii", "replace")
        raw_path, _, raw_query = target.partition("?")
        path = unquote(raw_path)
        headers: dict[str, str] = {}
        for k, v in ev.headers:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        upload: Upload | None = None
        user = None
        try:
            route, args = routes.find(method, path)
            identity = await s._auth(s.kind, headers, self.peercert, route)
            user = identity.name
            req = Request(method, path, parse_query(raw_query), headers, identity, args=args,
                          base_url=f"{s.scheme}://{self._host(headers)}", listener=s.kind)
            body, upload = await self._body(route, headers)
            req.body, req.upload = body, upload
            resp = routes.dispatch(s.state, req, route, args)
            upload = None  # the handler committed or aborted it
        except HttpError as exc:
            resp = exc.response()
        except TimeoutError:
            resp = HttpError(408, "request body too slow").response()
        except MultipartError as exc:
            resp = HttpError(400, f"bad multipart body: {exc}").response()
        finally:
            if upload is not None:
                upload.abort()
        if self.h.their_state is h11.SEND_BODY and headers.get("content-length", "0") == "0" \
                and "transfer-encoding" not in headers:
            with contextlib.suppress(HttpError, TimeoutError):  # refused early, but there is no body:
                await self._next(s.limits.body_timeout)  # take its end, keep the connection
        must_close = self.h.their_state is not h11.DONE  # body not read (refused early): do not reuse
        await self._send(resp, close=must_close, head=method == "HEAD")
        if s.metrics is not None:
            s.metrics.inc("http_requests")
            if resp.status >= 400:
                s.metrics.inc(f"http_{resp.status}")
        level = logs.info if resp.status >= 400 else logs.debug
        level("http.request", listener=s.kind, peer=self.peer, user=user, method=method, path=path[:120],
              status=resp.status, ms=round((time.monotonic() - t0) * 1000, 1))
        return not must_close

    def _host(self, headers: dict[str, str]) -> str:
        host = headers.get("host", "")
        return host if host and _HOST_RE.match(host) else self.local

    async def _body(self, route: routes.Route, headers: dict[str, str]) -> tuple[bytes, Upload | None]:
        s = self.s
        limit = s.max_upload if route.body == "upload" else s.limits.max_small_body
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _over(route, limit)
        sink: UploadSink | None = None
        if route.body == "upload":
            try:
                sink = UploadSink(s.state.files.begin, headers.get("content-type"))
            except MultipartError as exc:
                raise HttpError(400, f"Data package upload must use multipart/form-data POST: {exc}") from None
        if self.h.they_are_waiting_for_100_continue:
            self.w.write(self.h.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                ev = await self._next(s.limits.body_timeout)
                if isinstance(ev, h11.EndOfMessage):
                    break
                if isinstance(ev, h11.ConnectionClosed):
                    raise _Closed
                if not isinstance(ev, h11.Data):
                    continue
                size += len(ev.data)
                if size > limit:
                    raise _over(route, limit)
                if sink is not None:
                    sink.feed(ev.data)
                else:
                    chunks.append(ev.data)
            if sink is not None:
                return b"", sink.finish()
        except BaseException:
            if sink is not None:
                sink.upload.abort()
            raise
        return b"".join(chunks), None

    async def _send(self, resp: Response, *, close: bool, head: bool = False) -> None:
        h = self.h
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            raise _Closed
        length = resp.file_size if resp.file is not None else len(resp.body)
        hdrs = [("Server", "Kestrel"), ("Content-Length", str(length))]
        if resp.content_type:
            hdrs.append(("Content-Type", resp.content_type))
        if resp.status == 401:
            hdrs.append(("WWW-Authenticate", 'Basic realm="Kestrel"'))
        hdrs += resp.headers
        if close:
            hdrs.append(("Connection", "close"))
        try:
            self.w.write(h.send(h11.Response(status_code=resp.status, headers=hdrs)) or b"")
            if not head and resp.status not in (204, 304):
                if resp.file is not None:
                    await self._send_file(resp)
                elif resp.body:
                    self.w.write(h.send(h11.Data(data=resp.body)) or b"")
            self.w.write(h.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            logs.warning("http.protocol_error", listener=self.s.kind, reason=str(exc)[:120])
            raise _Closed from None
        await self.w.drain()

    async def _send_file(self, resp: Response) -> None:
        assert resp.file is not None
        left = resp.file_size
        with open(resp.file, "rb") as f:
            while left > 0:
                data = f.read(min(self.s.limits.chunk * 4, left))
                if not data:
                    raise _Closed  # the file shrank under us: the length was promised, so hang up
                left -= len(data)
                self.w.write(self.h.send(h11.Data(data=data)) or b"")
                await self.w.drain()


def basic_credentials(headers: dict[str, str]) -> tuple[str, str] | None:
    """(user, password) from `Authorization: Basic …`, or None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def _over(route: routes.Route, limit: int) -> HttpError:
    """A body over its limit. Uploads get TAK Server's answer (400 "Uploaded file exceeds server's
    size limit"); any other request body gets HTTP's 413."""
    if route.body == "upload":
        return HttpError(400, f"Uploaded file exceeds server's size limit of {limit / 1_000_000:g} MB!")
    return HttpError(413, f"request body over the limit of {limit} bytes")
