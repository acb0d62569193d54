"""Marti settings: the `[marti]` table of the server's TOML file plus `--http-port`, `--https-port`,
`--enroll-port` (flags win). Unknown keys are errors.

    [marti]
    http_port = 8080        # plain HTTP (TAK's 8080); "off" to disable
    https_port = 8443       # HTTPS with client certificates (the certificates of 8089)
    enroll_port = 8446      # HTTPS enrollment: server certificate + HTTP Basic auth
    http_groups = ["tcp-open"]   # groups of anonymous 8080 callers (default: the tcp listener's)
    max_file_mb = 400       # largest upload (TAK's enterpriseSyncSizeLimitMB default)
    quota_mb = 10240        # all distinct stored files together
    name_entries = [["O", "Kestrel"]]   # RDNs a CSR must carry besides CN (tls/config)

A port given in the file or by flag is required (in use or no certificates: error); the defaults
are skipped with a log line when their port is taken or, for the two HTTPS ports, when there are
no certificates yet. Plain HTTP follows the rule of plain TCP: on a non-loopback address it needs
groups of its own (`http_groups`, or the tcp listener's `[groups.listeners] tcp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kestrel.server.config import ANON, ConfigError, ListenerConfig, ServerConfig, is_loopback, parse_port

KEYS = {"http_port", "https_port", "enroll_port", "http_groups", "max_file_mb", "quota_mb", "name_entries", "host"}
DEFAULT_PORTS = {"http": 8080, "https": 8443, "enroll": 8446}


@dataclass(slots=True)
class MartiConfig:
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))  # kind -> port (0: any)
    required: set[str] = field(default_factory=set)  # kinds whose port was asked for explicitly
    http_groups: frozenset[str] = frozenset({ANON})
    max_file: int = 400 * 1_000_000
    quota: int = 10_240 * 1_000_000
    name_entries: tuple[tuple[str, str], ...] = (("O", "Kestrel"),)


def _mb(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of megabytes, got {value!r}")
    return int(value * 1_000_000)


def parse(cfg: ServerConfig, where: str = "config") -> MartiConfig:
    """Marti settings from `cfg.marti` (the raw table + flags). Raises ConfigError."""
    raw = dict(cfg.marti)
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"{where} [marti]: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(KEYS))})")
    m = MartiConfig(host=str(raw.get("host", cfg.host)))
    for kind in DEFAULT_PORTS:
        key = f"{kind}_port"
        if key in raw:
            port = parse_port(raw[key], f"{where} [marti] {key}")
            if port is None:
                del m.ports[kind]
            else:
                m.ports[kind] = port
                m.required.add(kind)
    if "max_file_mb" in raw:
        m.max_file = _mb(raw["max_file_mb"], f"{where} [marti] max_file_mb")
    if "quota_mb" in raw:
        m.quota = _mb(raw["quota_mb"], f"{where} [marti] quota_mb")
    if "name_entries" in raw:
        ne = raw["name_entries"]
        ok = isinstance(ne, list) and all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) and x for x in e) for e in ne)
        if not ok:
            raise ConfigError(f"{where} [marti] name_entries: expected a list of [name, value] pairs")
        m.name_entries = tuple((str(a), str(b)) for a, b in ne)
    tcp = next((li for li in cfg.listeners if li.name == "tcp"), None)
    explicit = None
    if "http_groups" in raw:
        g = raw["http_groups"]
        if not isinstance(g, list) or not g or not all(isinstance(x, str) and x for x in g):
            raise ConfigError(f"{where} [marti] http_groups: expected a non-empty list of group names")
        explicit = frozenset(g)
    elif tcp is not None and tcp.groups is not None:
        explicit = frozenset(tcp.groups)
    m.http_groups = explicit if explicit is not None else frozenset(
        cfg.groups_for(tcp or ListenerConfig("http", "tcp", m.host, 0)))
    if "http" in m.ports and explicit is None and not is_loopback(m.host):
        raise ConfigError(
            f"{where}: plain HTTP (Marti API, port {m.ports['http']}) on {m.host} has no authentication and no "
            f"groups of its own; set [marti] http_groups (or the tcp listener's [groups.listeners] tcp), "
            f"listen on 127.0.0.1, or turn it off with --http-port off"
        )
    return m
