"""Server counters and gauges, rendered as Prometheus text (`/metrics`) and one status line.

Goal: every limit the server enforces leaves a trace an admin can read: a counter per reason
(`dropped_rate`, `dropped_invalid`, `closed_idle`, `refused_max_connections`, …) and, for a
misbehaving client, at most one log line per reason per `LOG_EVERY` seconds (a flood must not
flood the log). Other parts of the server extend it by calling `inc()` with a new name, or
`gauge()` with a callable; nothing has to be declared first.

Naming: a counter `dropped_rate` is rendered `kestrel_dropped_total{reason="rate"}` (the families in
`FAMILIES` share one metric with a `reason` label); any other counter `x` is `kestrel_x_total`;
a gauge `g` is `kestrel_g` (a gauge may return {label_value: number} for one labelled series per
value, e.g. retained bytes per group). Worst case: `inc` O(1); `render` O(counters + gauge series).

    m = Metrics(); m.inc("dropped_rate"); m.limited_warning("client.rate", "rate", id=3)
    server = await MetricsListener.start("127.0.0.1", 0, m.render)   # GET /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from kestrel.server import logs

PREFIX = "kestrel"
FAMILIES = ("dropped", "closed", "refused", "throttled")  # counter name "<family>_<reason>"
LOG_EVERY = 10.0  # seconds between two log lines of the same rate-limited kind
GaugeValue = float | int | dict[str, float | int]


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counters: dict[str, int] = {}
        self._gauges: dict[str, tuple[Callable[[], GaugeValue], str, str]] = {}
        self._help: dict[str, str] = {}
        self._clock = clock
        self._logged: dict[str, float] = {}  # rate-limit key -> clock of its last line
        self._suppressed: dict[str, int] = {}

    # -- writing -----------------------------------------------------------------------------------

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def describe(self, name: str, text: str) -> None:
        """HELP text of a counter family or counter (optional)."""
        self._help[name] = text

    def gauge(self, name: str, read: Callable[[], GaugeValue], text: str = "", label: str = "name") -> None:
        """Register a gauge read at render time; a dict result is one series per key (`label`=key)."""
        self._gauges[name] = (read, text, label)

    def limited_warning(self, event: str, *, rate_key: str | None = None, **fields: Any) -> bool:
        """A warning log line, at most one per `key` (default: `event`) per LOG_EVERY seconds; the
        next line says how many were suppressed meanwhile. Returns whether a line was written."""
        key = rate_key or event
        now = self._clock()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._logged[key] = now
        suppressed = self._suppressed.pop(key, 0) or None
        logs.warning(event, **fields, suppressed=suppressed)
        return True

    # -- reading -----------------------------------------------------------------------------------

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    def snapshot(self) -> dict[str, float]:
        """Flat {name: value}: counters by their own name, gauges (labelled ones as `name{key}`)."""
        out: dict[str, float] = dict(self.counters)
        for name, (read, _, _) in self._gauges.items():
            v = _read(read)
            if isinstance(v, dict):
                out.update({f"{name}{{{k}}}": float(x) for k, x in v.items()})
            else:
                out[name] = float(v)
        return out

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        families: dict[str, list[tuple[str, int]]] = {}
        plain: list[tuple[str, int]] = []
        for name, value in sorted(self.counters.items()):
            fam, _, reason = name.partition("_")
            if fam in FAMILIES and reason:
                families.setdefault(fam, []).append((reason, value))
            else:
                plain.append((name, value))
        for fam, series in families.items():
            metric = f"{PREFIX}_{fam}_total"
            lines.append(f"# HELP {metric} {self._help.get(fam, fam + ' by reason')}")
            lines.append(f"# TYPE {metric} counter")
            lines.extend(f'{metric}{{reason="{_label(r)}"}} {v}' for r, v in series)
        for name, value in plain:
            metric = f"{PREFIX}_{name}_total"
            lines.append(f"# HELP {metric} {self._help.get(name, name)}")
            lines.append(f"# TYPE {metric} counter")
            lines.append(f"{metric} {value}")
        for name, (read, text, label) in sorted(self._gauges.items()):
            metric = f"{PREFIX}_{name}"
            lines.append(f"# HELP {metric} {text or name}")
            lines.append(f"# TYPE {metric} gauge")
            v = _read(read)
            if isinstance(v, dict):
                lines.extend(f'{metric}{{{label}="{_label(k)}"}} {_num(x)}' for k, x in sorted(v.items()))
            else:
                lines.append(f"{metric} {_num(v)}")
        return "\n".join(lines) + "\n"


def _read(read: Callable[[], GaugeValue]) -> GaugeValue:
    try:
        return read()
    except Exception:  # a broken gauge must not break /metrics
        return float("nan")


def _num(v: float | int) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def _label(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")[:200]


class MetricsListener:
    """A minimal HTTP/1.1 responder: `GET /metrics` -> Prometheus text; anything else 404.

    One request per connection; the request head must arrive within `timeout` seconds and be
    < 8 KiB, else the connection is closed. Loopback unless configured otherwise (the caller
    checks exposure). Worst case per connection: one task, 8 KiB, `timeout` seconds.
    """

    def __init__(self, server: asyncio.Server, render: Callable[[], str], timeout: float) -> None:
        self._server, self._render, self._timeout = server, render, timeout
        self.port: int = server.sockets[0].getsockname()[1]

    @classmethod
    async def start(cls, host: str, port: int, render: Callable[[], str], timeout: float = 5.0) -> MetricsListener:
        holder: list[MetricsListener] = []

        async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await holder[0]._serve(r, w)

        srv = await asyncio.start_server(on_client, host, port, limit=8192)
        holder.append(cls(srv, render, timeout))
        return holder[0]

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), self._timeout)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD") and parts[1].split(b"?")[0] == b"/metrics":
                body = self._render().encode()
                status, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            else:
                body, status, ctype = b"not found: try GET /metrics\n", "404 Not Found", "text/plain"
            w.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n".encode())
            if parts[:1] != [b"HEAD"]:
                w.write(body)
            await w.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            w.close()

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
