"""`kestrel serve` flags of the cluster: --cluster, --site, --hub, --hold-groups, --workers, --status.

The server's own CLI calls `add_arguments` and, per invocation, `merge_table` (the config file's
`[cluster]` table: the same settings as the flags, which win), `config_from` (a ClusterConfig or
None), `run_workers` or `show_status`. Bad flags raise BadInput (one line, exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kestrel.cluster import wire
from kestrel.cluster.backplane import ClusterConfig
from kestrel.cluster.wire import URL_FILE  # defined with the other names on the wire


def add_arguments(p: Any) -> None:
    g = p.add_argument_group("cluster (see docs/cluster.md)")
    g.add_argument("--cluster", metavar="nats://HOST:PORT",
                   help="join the other server processes on this NATS server (JetStream on)")
    g.add_argument("--site", metavar="NAME", help="site name (default kestrel); an edge site names its own")
    g.add_argument("--hub", metavar="SITE", help="edge site: link to the hub SITE (its JetStream domain) "
                   "over the NATS leaf node, both ways, resuming after a cut")
    g.add_argument("--hold-groups", metavar="G[,G]", help="edge site: items only in these groups stay here")
    g.add_argument("--link-interval", type=float, metavar="S",
                   help="seconds between cross-site batches; SA is coalesced per contact (default 1)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="run N server processes sharing the ports (SO_REUSEPORT) over a NATS server "
                   "started here on loopback")
    g.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--wire", choices=("proto", "xml"), help=argparse.SUPPRESS)  # xml: --workers (CPU over bytes)


TABLE_KEYS = {  # [cluster] key -> (flag attribute, expected type)
    "url": ("cluster", str), "site": ("site", str), "hub": ("hub", str), "hold_groups": ("hold_groups", list),
    "link_interval": ("link_interval", float), "workers": ("workers", int),
}


def merge_table(args: argparse.Namespace, table: dict[str, Any], where: str = "config") -> None:
    """Fill the cluster flags not given on the command line from the config's `[cluster]` table
    (flags win). BadInput naming the file and key for an unknown key or a wrong type. `workers` is
    ignored in a process started with `--cluster` (a `--workers` child reads the same file)."""
    from kestrel.errors import BadInput

    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise BadInput(f"{where} [cluster]: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(TABLE_KEYS))})")
    if "url" in table and "workers" in table:
        raise BadInput(f"{where} [cluster]: give url (join a NATS server) or workers (start one here), not both")
    child = args.cluster is not None
    for key, value in table.items():
        attr, kind = TABLE_KEYS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list:
            if not isinstance(value, list) or not all(isinstance(g, str) and g and "," not in g for g in value):
                raise BadInput(f"{where} [cluster] {key}: expected a list of group names, got {value!r}")
            value = ",".join(value)
        elif not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            raise BadInput(f"{where} [cluster] {key}: expected {kind.__name__}, got {value!r}")
        if key == "workers" and child:
            continue
        if getattr(args, attr) is None:
            setattr(args, attr, value)


def config_from(args: argparse.Namespace) -> ClusterConfig | None:
    from kestrel.errors import BadInput

    if args.cluster is None:
        for flag in ("site", "hub", "hold_groups", "link_interval"):
            if getattr(args, flag) is not None:
                raise BadInput(f"--{flag.replace('_', '-')} needs --cluster (or --workers)")
        return None
    if not args.cluster.startswith(("nats://", "tls://")):
        raise BadInput(f"--cluster {args.cluster}: expected nats://HOST:PORT")
    try:
        site = wire.check_site(args.site or "kestrel")
        hub = wire.check_site(args.hub) if args.hub else None
    except ValueError as exc:
        raise BadInput(f"--site/--hub: {exc}") from None
    if hub == site:
        raise BadInput(f"--hub {hub}: an edge site links to another site, not to itself")
    interval = 1.0 if args.link_interval is None else args.link_interval
    if not 0 < interval <= 3600:
        raise BadInput(f"--link-interval {interval}: expected 0 < S <= 3600")
    hold = frozenset(g for g in (args.hold_groups or "").split(",") if g)
    return ClusterConfig(args.cluster, site, hub, hold, interval, args.wire or "proto")


def status_url(args: argparse.Namespace, data_dir: Path) -> str | None:
    """The NATS URL `--status` surveys: --cluster, else the one `--workers` on this data dir wrote."""
    if args.cluster:
        return str(args.cluster)
    f = data_dir / URL_FILE
    return f.read_text(encoding="utf-8").strip() if f.is_file() else None


def show_status(url: str, wait: float = 1.5) -> int:
    import asyncio

    from kestrel.cluster.status import gather, render

    replies = asyncio.run(gather(url, wait))
    print(render(replies))
    return 0 if replies else 1
