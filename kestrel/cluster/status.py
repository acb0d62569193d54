"""`kestrel serve --status`: ask every process of every reachable site, print one line each.

Every process answers `kst.status` (the subject crosses leaf nodes, so a hub sees its edges while
the link is up). The answer is JSON (Backplane.status()). Worst case: waits `wait` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from kestrel.cluster import wire
from kestrel.cluster.conn import connect


async def gather(url: str, wait: float = 1.5) -> list[dict[str, Any]]:
    nc = await connect(url, 5.0, "--status", allow_reconnect=False)
    replies: list[dict[str, Any]] = []
    inbox = nc.new_inbox()

    async def on_reply(msg: Any) -> None:
        with contextlib.suppress(ValueError):
            replies.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(wire.STATUS_SUBJECT, b"", reply=inbox)
    await asyncio.sleep(wait)  # a survey: answers arrive from every process that hears it
    await sub.unsubscribe()
    await nc.close()
    return sorted(replies, key=lambda r: (r.get("site", ""), r.get("pid", 0)))


def render(replies: list[dict[str, Any]]) -> str:
    if not replies:
        return "no Kestrel process answered"
    head = f"{'site':10} {'process':12} {'pid':>7} {'clients':>7} {'retained':>8} {'nats':5} {'outbox':>6} " \
           f"{'unconf':>6} link"
    lines = [head]
    for r in replies:
        link = r.get("link")
        ltxt = "-"
        if link:
            ltxt = (f"{link['hub']}: {link['state']}, backlog out {link['backlog_out']} in {link['backlog_in']}, "
                    f"bytes/min out {link['bytes_out_min']} in {link['bytes_in_min']}")
        lines.append(f"{r['site']:10} {r['node']:12} {r['pid']:>7} {r['clients']:>7} {r['retained']:>8} "
                     f"{r['nats']:5} {r['outbox']:>6} {r['unconfirmed']:>6} {ltxt}")
    return "\n".join(lines)
