"""Structured logs: one line per event of note, `key=value` pairs, greppable.

    2026-11-28T00:10:00.123Z level=info event=client.open id=3 peer=127.0.0.1:50512 listener=tcp

Values with spaces, quotes or `=` are quoted. Nothing secret is ever passed here (no keys, no
passwords, no payloads beyond a short, escaped prefix for bad input).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

LOGGER = logging.getLogger("kestrel.server")


MAX_FIELD = 200  # characters of one field value in a log line (a 10 kB callsign must not make a 10 kB line)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def short(v: Any, limit: int = MAX_FIELD) -> str:
    """`v` as text, at most `limit` characters (+ a `…(+N)` note of what was cut)."""
    s = ",".join(sorted(map(str, v))) if isinstance(v, frozenset | set) else str(v)
    return s if len(s) <= limit else f"{s[:limit]}…(+{len(s) - limit})"


def _value(v: Any) -> str:
    """One field value: bounded, control characters escaped, quoted when it holds spaces/quotes/=."""
    s = short(v)
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if _UNSAFE.search(s):
        s = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", s)
    if s == "" or any(c in s for c in ' "='):
        return '"' + s.replace('"', '\\"') + '"'
    return s


def kv(event: str, **fields: Any) -> str:
    """Render `event=NAME k=v ...` (the message part of a log line)."""
    parts = [f"event={event}"]
    parts.extend(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
    return " ".join(parts)


def info(event: str, **fields: Any) -> None:
    if LOGGER.isEnabledFor(logging.INFO):
        LOGGER.info(kv(event, **fields))


def warning(event: str, **fields: Any) -> None:
    LOGGER.warning(kv(event, **fields))


def debug(event: str, **fields: Any) -> None:
    if LOGGER.isEnabledFor(logging.DEBUG):
        LOGGER.debug(kv(event, **fields))


def preview(data: bytes, limit: int = 48) -> str:
    """A short, printable, escaped prefix of untrusted bytes for a log line."""
    return repr(bytes(data[:limit]))[2:-1]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        return f"{ts}.{ms:03d}Z level={record.levelname.lower()} {record.getMessage()}"


class _Stderr(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time of the record (not at set-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never take the server down
            self.handleError(record)


def setup(level: str = "info") -> None:
    """Send server logs to stderr, one line each (idempotent)."""
    handler = _Stderr()
    handler.setFormatter(_Formatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
