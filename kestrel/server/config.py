"""Server configuration: a TOML file plus command-line flags (flags win).

Everything has an embedded default, so `kestrel serve` with no file works on an empty data dir.
Unknown keys are errors (a typo must not silently weaken access control). See docs/server.md.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kestrel.errors import BadInput

ANON = "__ANON__"
KINDS = ("tcp", "tls", "udp")
CERT_FILES = ("ca.pem", "server.pem", "server.key")


class ConfigError(BadInput):
    """Bad configuration; the message names the file/key and what was wrong."""


@dataclass(slots=True)
class ListenerConfig:
    name: str
    kind: str  # "tcp" | "tls" | "udp"
    host: str
    port: int  # 0: the OS picks (tests); the bound port is in Server.ports
    groups: tuple[str, ...] | None = None  # None: the default groups
    required: bool = True  # False: a default TLS listener that is skipped without certificates


@dataclass(slots=True)
class Limits:
    """`[limits]`: what one client (or one group) may cost. Exceeding a limit costs only that client:
    its event is dropped or its connection closed, with a counter and a rate-limited log line.
    Documented in docs/server.md ("Limits"); every value must be a positive number."""

    max_event_bytes: int = 1 << 20  # one event (pending, unterminated bytes) per connection: over it, closed
    negotiation_window: float = 60.0  # seconds a client may answer the protobuf offer
    queue_bytes: int = 4 << 20  # outbound bytes waiting for one client before it is dropped
    queue_messages: int = 20_000  # outbound messages waiting for one client before it is dropped
    handshake_timeout: float = 10.0  # TLS handshake
    max_retained: int = 100_000  # retained items (latest SA + markers) per group, in memory and on disk
    retained_bytes_per_group: int = 64 << 20  # retained picture per group (oldest evicted first)
    max_connections: int = 10_000  # streaming clients at once (TCP + TLS); more are refused
    max_connections_per_address: int = 1_000  # from one IP address (NAT'd units share one)
    events_per_s_per_client: float = 200.0  # sustained events a client may send (token bucket)
    events_burst_per_client: int = 1_000  # bucket size: a burst above the rate (a data package)
    bytes_per_s_per_client: int = 1 << 20  # sustained bytes a client may send; over it, not read
    bytes_burst_per_client: int = 4 << 20  # byte bucket size (a few max-size events at once)
    idle_timeout_s: float = 600.0  # no byte at all for this long: closed (ATAK pings every ~15 s)
    incomplete_event_timeout_s: float = 60.0  # an event begun but unfinished this long after its first byte
    oversize_penalty_s: float = 1.0  # after an oversize close, new connections from that address refused (0: off)
    max_datagram: int = 65_507
    read_chunk: int = 65_536


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    data_dir: Path = Path("kestrel-data")
    listeners: list[ListenerConfig] = field(default_factory=list)
    default_groups: tuple[str, ...] = (ANON,)
    cert_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    tls_ca: Path | None = None  # default <data>/certs/ca.pem
    tls_cert: Path | None = None  # default <data>/certs/server.pem
    tls_key: Path | None = None  # default <data>/certs/server.key
    store_flush_seconds: float = 1.0
    metrics_host: str = "127.0.0.1"  # GET /metrics (Prometheus text); loopback unless configured
    metrics_port: int | None = 0  # 0: any free port (written to <data>/kestrel.lock); None: off
    repair: bool = False  # move an unreadable kestrel.db aside instead of refusing to start
    loop: str = "asyncio"  # "asyncio" | "uvloop" | "auto" (uvloop when installed, else asyncio)
    log_level: str = "info"
    reuse_port: bool = False  # SO_REUSEPORT: several processes share the ports (`--workers`)
    marti: dict[str, Any] = field(default_factory=dict)  # the [marti] table (read by kestrel.marti.config)
    cluster: dict[str, Any] = field(default_factory=dict)  # the [cluster] table (read by kestrel.cluster.cli)

    def cert_paths(self) -> tuple[Path, Path, Path]:
        certs = self.data_dir / "certs"
        return (
            self.tls_ca or certs / CERT_FILES[0],
            self.tls_cert or certs / CERT_FILES[1],
            self.tls_key or certs / CERT_FILES[2],
        )

    def groups_for(self, listener: ListenerConfig, cert_cn: str | None = None) -> frozenset[str]:
        """A client's groups: its certificate CN's entry, else its listener's, else the default."""
        if cert_cn is not None and cert_cn in self.cert_groups:
            return frozenset(self.cert_groups[cert_cn])
        if listener.groups is not None:
            return frozenset(listener.groups)
        return frozenset(self.default_groups)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SERVER_KEYS = {"host", "data", "tcp_port", "tls_port", "udp_port", "loop", "log_level", "store_flush_seconds",
                "metrics_host", "metrics_port"}
_TLS_KEYS = {"ca", "cert", "key"}
_LISTENER_KEYS = {"name", "kind", "host", "port", "groups"}
_TOP_KEYS = {"server", "limits", "groups", "tls", "listeners", "marti", "cluster"}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _groups(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(g, str) and g for g in value):
        raise ConfigError(f"{where}: expected a non-empty list of group names")
    return tuple(value)


def _positive(value: Any, where: str) -> float:
    """A finite number > 0 (0 would spin a loop or disable a limit; a string is a typo)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ConfigError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def parse_port(value: Any, where: str) -> int | None:
    """A port number, or None for "off"."""
    if value == "off" or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where}: expected a port 0-65535 or \"off\", got {value!r}")
    return value


def load(
    path: Path | None = None,
    *,
    host: str | None = None,
    tcp_port: int | None = None,
    tls_port: int | None = None,
    udp_port: int | None = None,
    data_dir: Path | None = None,
    loop: str | None = None,
    log_level: str | None = None,
) -> ServerConfig:
    """Read the TOML file (if any), then apply flag overrides. Raises ConfigError."""
    raw: dict[str, Any] = {}
    where = str(path) if path else "config"
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    _check_keys(raw, _TOP_KEYS, where)
    srv = raw.get("server", {})
    _check_keys(srv, _SERVER_KEYS, f"{where} [server]")
    for key in ("host", "data", "loop", "log_level"):
        if key in srv and (not isinstance(srv[key], str) or not srv[key]):
            raise ConfigError(f"{where} [server] {key}: expected a non-empty string, got {srv[key]!r}")
    cfg = ServerConfig()
    cfg.host = host or srv.get("host", cfg.host)
    cfg.data_dir = Path(data_dir or srv.get("data", cfg.data_dir))
    cfg.loop = loop or srv.get("loop", cfg.loop)
    cfg.log_level = log_level or srv.get("log_level", cfg.log_level)
    if not isinstance(raw.get("marti", {}), dict):
        raise ConfigError(f"{where}: [marti] must be a table")
    cfg.marti = dict(raw.get("marti", {}))  # checked (with the serve flags) by kestrel.marti.config
    if not isinstance(raw.get("cluster", {}), dict):
        raise ConfigError(f"{where}: [cluster] must be a table")
    cfg.cluster = dict(raw.get("cluster", {}))  # checked (with the serve flags) by kestrel.cluster.cli
    cfg.store_flush_seconds = _positive(srv.get("store_flush_seconds", cfg.store_flush_seconds),
                                        f"{where} [server] store_flush_seconds")
    if cfg.log_level not in ("debug", "info", "warning"):
        raise ConfigError(f"{where} [server] log_level: expected debug, info or warning, got {cfg.log_level!r}")
    if cfg.loop not in ("asyncio", "uvloop", "auto"):
        raise ConfigError(f"{where} [server] loop: expected asyncio, uvloop or auto, got {cfg.loop!r}")

    lim = raw.get("limits", {})
    _check_keys(lim, set(Limits.__slots__), f"{where} [limits]")  # type: ignore[attr-defined]
    defaults = Limits()
    for key, value in lim.items():
        off = key == "oversize_penalty_s" and value == 0  # the one limit 0 turns off
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < float("inf") or off):
            raise ConfigError(f"{where} [limits] {key}: expected a positive number, got {value!r}")
        kind = type(getattr(defaults, key))
        if kind is int and value != int(value):
            raise ConfigError(f"{where} [limits] {key}: expected a whole number, got {value!r}")
        if key.endswith("_timeout_s") and value < 1:
            raise ConfigError(f"{where} [limits] {key}: expected at least 1 (seconds), got {value!r}")
        setattr(cfg.limits, key, kind(value))
    lm = cfg.limits
    if lm.retained_bytes_per_group < lm.max_event_bytes:
        raise ConfigError(f"{where} [limits] retained_bytes_per_group: {lm.retained_bytes_per_group} is below "
                          f"max_event_bytes ({lm.max_event_bytes}): one event would not fit")
    if lm.bytes_per_s_per_client * lm.incomplete_event_timeout_s < lm.max_event_bytes:
        raise ConfigError(f"{where} [limits] bytes_per_s_per_client: {lm.bytes_per_s_per_client} bytes/s for "
                          f"incomplete_event_timeout_s ({lm.incomplete_event_timeout_s:g}) cannot carry one event of "
                          f"max_event_bytes ({lm.max_event_bytes}): it would always be closed as incomplete")
    if lm.max_connections_per_address > lm.max_connections:
        lm.max_connections_per_address = lm.max_connections
    cfg.metrics_host = str(srv.get("metrics_host", cfg.metrics_host))
    cfg.metrics_port = parse_port(srv.get("metrics_port", 0), f"{where} [server] metrics_port")

    tls = raw.get("tls", {})
    _check_keys(tls, _TLS_KEYS, f"{where} [tls]")
    cfg.tls_ca = Path(tls["ca"]) if "ca" in tls else None
    cfg.tls_cert = Path(tls["cert"]) if "cert" in tls else None
    cfg.tls_key = Path(tls["key"]) if "key" in tls else None

    grp = raw.get("groups", {})
    _check_keys(grp, {"default", "listeners", "certs"}, f"{where} [groups]")
    if "default" in grp:
        cfg.default_groups = _groups(grp["default"], f"{where} [groups] default")
    listener_groups = {
        k: _groups(v, f"{where} [groups.listeners] {k}") for k, v in grp.get("listeners", {}).items()
    }
    cfg.cert_groups = {k: _groups(v, f"{where} [groups.certs] {k}") for k, v in grp.get("certs", {}).items()}

    # The three standard listeners; a flag beats the file, the file beats the default.
    tcp = tcp_port if tcp_port is not None else parse_port(srv.get("tcp_port", 8087), f"{where} [server] tcp_port")
    tls_explicit = tls_port is not None or "tls_port" in srv
    tlsp = tls_port if tls_port is not None else parse_port(srv.get("tls_port", 8089), f"{where} [server] tls_port")
    udp = udp_port if udp_port is not None else parse_port(srv.get("udp_port", "off"), f"{where} [server] udp_port")
    for name, port, required in (("tcp", tcp, True), ("tls", tlsp, tls_explicit), ("udp", udp, True)):
        if port is not None:
            cfg.listeners.append(ListenerConfig(name, name, cfg.host, port, listener_groups.get(name), required))

    extra = raw.get("listeners", [])
    if not isinstance(extra, list):
        raise ConfigError(f"{where}: [[listeners]] must be an array of tables")
    for i, item in enumerate(extra):
        w = f"{where} [[listeners]] #{i + 1}"
        _check_keys(item, _LISTENER_KEYS, w)
        name, kind = item.get("name"), item.get("kind")
        if not isinstance(name, str) or not name or kind not in KINDS:
            raise ConfigError(f"{w}: needs a name and kind = tcp|tls|udp")
        port = parse_port(item.get("port"), f"{w} port")
        if port is None:
            raise ConfigError(f"{w}: needs a port")
        groups = _groups(item["groups"], f"{w} groups") if "groups" in item else listener_groups.get(name)
        cfg.listeners.append(ListenerConfig(name, kind, item.get("host", cfg.host), port, groups))
    names = [li.name for li in cfg.listeners]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: listener names must be unique, got {names}")
    unknown = sorted(set(listener_groups) - set(names) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where} [groups.listeners]: no listener named {unknown[0]!r}")
    check_exposure(cfg, where)
    return cfg


def check_exposure(cfg: ServerConfig, where: str = "config") -> None:
    """Refuse a plain (unauthenticated) TCP/UDP listener on a non-loopback address without groups of
    its own: by default it would share `[groups] default` (`__ANON__`) with certificate-authenticated
    TLS clients, so anyone on the network could read and inject their traffic. The admin must say
    which groups it gets (TAK Server's secure default: exposing an anonymous input is a decision).
    Loopback listeners keep the default (local tools, the demo). Raises ConfigError."""
    for li in cfg.listeners:
        if li.kind in ("tcp", "udp") and li.groups is None and not is_loopback(li.host):
            shared = ", ".join(cfg.default_groups)
            raise ConfigError(
                f"{where}: plain {li.kind} listener {li.name!r} on {li.host} has no authentication and no "
                f"groups of its own, so its clients would share [{shared}] with TLS clients; set its groups "
                f"in [groups.listeners], e.g. {li.name} = [\"{li.name}-open\"] to isolate it or "
                f"{li.name} = [\"{ANON}\"] to share on purpose (or listen on 127.0.0.1)"
            )
