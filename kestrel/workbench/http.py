"""A small HTTP/1.1 server on asyncio streams: enough for one page, its JSON API, pictures and
Server-Sent Events. No framework: requests are bounded (16 KiB of head, 64 KiB of body), one
connection's bad request costs only that connection (a 400 and close), keep-alive is honoured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    ctype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None  # SSE: chunks written as they come


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":"), default=str).encode())


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


Handler = Callable[[Request], Awaitable[Response]]


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request, or None at a clean end of the connection. Raises HttpError on bad input."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request") from None
    except asyncio.LimitOverrunError:
        raise HttpError(400, "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise HttpError(400, "bad header line")
        headers[k.strip().lower()] = v.strip()
    body = b""
    n = headers.get("content-length")
    if n:
        if not n.isdigit():
            raise HttpError(400, "bad Content-Length")
        if int(n) > MAX_BODY:
            raise HttpError(413, "body too large")
        body = await reader.readexactly(int(n))
    u = urlsplit(parts[1])
    return Request(parts[0].upper(), unquote(u.path), parse_qs(u.query), headers, body)


def _head(resp: Response, keep: bool) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}", f"Content-Type: {resp.ctype}",
             "X-Content-Type-Options: nosniff", "Referrer-Policy: no-referrer"]
    if resp.stream is None:
        lines.append(f"Content-Length: {len(resp.body)}")
        lines.append(f"Connection: {'keep-alive' if keep else 'close'}")
    else:
        lines += ["Cache-Control: no-store", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in resp.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    try:
        while True:
            try:
                req = await read_request(reader)
            except HttpError as exc:
                resp = error_response(exc.status, str(exc))
                writer.write(_head(resp, False) + resp.body)
                await writer.drain()
                return
            if req is None:
                return
            try:
                resp = await handler(req)
            except HttpError as exc:
                resp = error_response(exc.status, str(exc))
            keep = req.headers.get("connection", "").lower() != "close"
            writer.write(_head(resp, keep))
            if resp.stream is not None:
                async for chunk in resp.stream:
                    writer.write(chunk)
                    await writer.drain()
                return
            if req.method != "HEAD":
                writer.write(resp.body)
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
