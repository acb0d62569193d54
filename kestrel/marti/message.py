"""The small records every Marti handler works on: who asks (`Identity`), what (`Request`), the
answer (`Response`), and `HttpError` for a refusal with its status code.

Handlers are plain functions `(state, Request) -> Response`: no sockets, no awaits, so every
endpoint is testable with a record in and a record out. The asyncio shell (`shell`) turns bytes into
a `Request` and a `Response` back into bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent the request: a certificate CN (8443), a Basic-auth user (8446) or nobody (8080)."""

    name: str | None
    groups: frozenset[str]
    via: str  # "cert" | "basic" | "anonymous"


@dataclass(slots=True)
class Request:
    method: str
    path: str  # decoded path without the query, e.g. /Marti/sync/content
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    identity: Identity
    body: bytes = b""
    base_url: str = ""  # scheme://host:port the client used (for content URLs we hand back)
    listener: str = "http"  # "http" | "https" | "enroll"
    upload: Any = None  # a finished upload (files.Upload) for streaming endpoints
    args: tuple[str, ...] = ()  # path segments the route captured (a hash, a mission name)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter `name` (TAK matches these case-sensitively)."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"body is not JSON ({exc})") from None


def parse_query(raw: str) -> dict[str, list[str]]:
    return parse_qs(raw, keep_blank_values=True, max_num_fields=100)


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None  # stream this file instead of `body` (downloads)
    file_size: int = 0


def text(body: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, body.encode(), content_type)


def as_json(obj: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), content_type)


def xml(body: str | bytes, status: int = 200) -> Response:
    data = body.encode() if isinstance(body, str) else body
    return Response(status, data, "application/xml")


def no_content() -> Response:
    return Response(204)


def api_response(type_: str, data: Any, node_id: str) -> dict[str, Any]:
    """TAK Server's `ApiResponse` envelope (API version "3")."""
    return {"version": "3", "type": type_, "data": data, "nodeId": node_id}


class HttpError(Exception):
    """A refusal: status code and a short reason (sent as text/plain, safe to show)."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []

    def response(self) -> Response:
        return Response(self.status, (self.reason + "\n").encode(), "text/plain; charset=utf-8", list(self.headers))
